"""The gate's reference cache: named by what an entry depends on, written atomically, never fatal."""

from __future__ import annotations

from pathlib import Path

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
