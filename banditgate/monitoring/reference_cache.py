"""A directory of cached reference statistics for the gate.

A generation's reference window is its training window, in the past: while no decision is added to it, its
seeded sample (contexts, candidate sets, probability vectors) and the generation's scores on that sample come
out the same on every evaluation, and reading and scoring them is a third of an evaluation's cost. Entries
are named by a digest of everything they depend on (see ``read_evidence`` and ``evaluate_gate``), so a change
of window, sample size, seed, model or rule misses the cache instead of reading a stale entry; labels, which
keep arriving, are never cached.

Entries are pickles, written atomically, in a directory under the artifact directory. They are read back by an
unpickler that accepts only what the gate stores (data frames, arrays, its scores): an entry naming any other
class or function, which is how a pickle runs code, is refused unread and costs a recomputation, so a file planted
in the directory cannot run code in the gate.

Example
-------
>>> import tempfile
>>> cache = ReferenceCache(tempfile.mkdtemp())
>>> name = cache.name(policy="default", generation=3, seed=0)
>>> cache.load(name) is None
True
>>> cache.store(name, {"scores": [0.2, 0.9]})
>>> cache.load(name)
{'scores': [0.2, 0.9]}
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

#: The classes and functions an entry may name: those of the frames (with a UTC timestamp column), arrays and
#: scores the gate caches. An entry that a later pandas or numpy pickles with other names is refused: a miss.
_ALLOWED = frozenset(
    {
        ("banditgate.monitoring.gate", "_Scored"),
        ("builtins", "slice"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),
        ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas.core.arrays.datetimes", "DatetimeArray"),
        ("pandas.core.dtypes.dtypes", "DatetimeTZDtype"),
        ("pandas.core.frame", "DataFrame"),
        ("pandas.core.indexes.base", "Index"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.indexes.range", "RangeIndex"),
        ("pandas.core.internals.managers", "BlockManager"),
    }
)


class _EntryUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not something the gate caches")
        return super().find_class(module, name)


class ReferenceCache:
    """Cached reference statistics in ``directory`` (created on first store).

    Parameters
    ----------
    directory
        Where the entries live, e.g. ``<artifact_dir>/gate-cache``.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @staticmethod
    def name(**depends_on: Any) -> str:
        """An entry's name: a digest of what it depends on (JSON-able values)."""
        canonical = orjson.dumps(depends_on, option=orjson.OPT_SORT_KEYS, default=str)
        return hashlib.sha256(canonical).hexdigest()[:32]

    def load(self, name: str) -> Any | None:
        """The entry, or None if there is none (or it cannot be read: it is then recomputed)."""
        path = self.directory / f"{name}.pickle"
        try:
            with path.open("rb") as file:
                return _EntryUnpickler(file).load()
        except FileNotFoundError:
            return None
        except Exception as exc:  # a truncated or foreign file costs a recomputation, never an evaluation
            log.warning("ignoring unreadable gate cache entry %s: %s", path, exc)
            return None

    def store(self, name: str, value: Any) -> None:
        """Write the entry atomically (readers see the old entry or the new one, never half of one). A cache that
        cannot be written is logged and skipped: the next evaluation recomputes what it would have held."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.directory, suffix=".tmp", delete=False) as file:
                pickle.dump(value, file, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(file.name, self.directory / f"{name}.pickle")
        except OSError as exc:
            log.warning("cannot write gate cache entry %s in %s: %s", name, self.directory, exc)
