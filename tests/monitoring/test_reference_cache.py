"""The gate's reference cache: named by what an entry depends on, written atomically, never fatal."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from banditgate.monitoring.gate import _Scored
from banditgate.monitoring.reference_cache import ReferenceCache


def test_names_differ_when_anything_an_entry_depends_on_differs() -> None:
    base = {"policy": "default", "window": ["2026-01-01", "2026-01-31"], "decisions": 1000, "seed": 0}
    name = ReferenceCache.name(**base)
    assert name == ReferenceCache.name(**dict(reversed(base.items())))  # order of the arguments is irrelevant
    for change in ({"decisions": 1001}, {"seed": 1}, {"window": ["2026-01-01", "2026-02-01"]}):
        assert ReferenceCache.name(**{**base, **change}) != name


def test_an_unreadable_entry_is_a_miss(tmp_path: Path) -> None:
    cache = ReferenceCache(tmp_path)
    (tmp_path / "broken.pickle").write_bytes(b"not a pickle")
    assert cache.load("broken") is None
    cache.store("broken", [1, 2])
    assert cache.load("broken") == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["broken.pickle"]  # no temporary file left behind


def test_a_cache_path_that_is_a_file_is_skipped_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "gate-cache").write_text("a file where the directory should be")
    cache = ReferenceCache(tmp_path / "gate-cache")
    cache.store("entry", {"a": 1})
    assert cache.load("entry") is None


class _CreatesFile:
    """Unpickling this creates ``path``: a stand-in for any code a pickle can run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (str(self.path), "w"))


def test_a_planted_entry_cannot_run_code(tmp_path: Path) -> None:
    """Whoever can write the cache directory must not get code run by the gate: the entry is refused unread."""
    cache = ReferenceCache(tmp_path)
    marker = tmp_path / "ran"
    (tmp_path / "entry.pickle").write_bytes(pickle.dumps({"sample": _CreatesFile(marker)}))
    assert cache.load("entry") is None
    assert not marker.exists()
    (tmp_path / "entry.pickle").write_bytes(pickle.dumps(os.system))  # naming a function is enough to refuse
    assert cache.load("entry") is None


def test_what_the_gate_caches_round_trips(tmp_path: Path) -> None:
    """A reference sample (the columns and dtypes ``read_evidence`` makes) and the scores on it load back equal:
    the allow-list of the cache's unpickler covers them, so the cache keeps hitting."""
    sample = pd.DataFrame(
        {
            "decision_id": ["d1", "d2"],
            "decided_at": pd.to_datetime([1_767_225_600_000_000, 1_767_225_601_000_000], unit="us", utc=True),
            "generation": [1, 1],
            "action_id": ["a", "b"],
            "fallback": [False, True],
            "issuer_country": ["NL", None],
            "context": [{"amount": 1.5, "country": "NL"}, {}],
            "actions": [[{"id": "a", "features": {}}], [{"id": "b", "features": {"fee": 2}}]],
            "probabilities": [[1.0], [0.25]],
            "held_out": np.array([False, True]),
        }
    )
    scored = _Scored(np.array([0.2, 0.9]), [[0.5, 0.5]], [1])
    cache = ReferenceCache(tmp_path)
    cache.store("sample", sample)
    cache.store("scores", scored)
    pd.testing.assert_frame_equal(cache.load("sample"), sample)
    loaded = cache.load("scores")
    np.testing.assert_array_equal(loaded.chosen, scored.chosen)
    assert (loaded.probabilities, loaded.greedy) == (scored.probabilities, scored.greedy)
