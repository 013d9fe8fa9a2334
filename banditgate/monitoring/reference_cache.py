"""A directory of cached reference statistics for the gate.

A generation's reference window is its training window, in the past: while no decision is added to it, its
seeded sample (contexts, candidate sets, probability vectors) and the generation's scores on that sample come
out the same on every evaluation, and reading and scoring them is a third of an evaluation's cost. Entries
are named by a digest of everything they depend on (see ``read_evidence`` and ``evaluate_gate``), so a change
of window, sample size, seed, model or rule misses the cache instead of reading a stale entry; labels, which
keep arriving, are never cached.

Entries are pickles, written atomically, in a directory under the artifact directory: it holds the models
the service loads, so whoever can write it can already change what the service serves.

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
                return pickle.load(file)
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
