"""Bulk reads of the ledger: millions of rows decoded into Python objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector for a bulk read or conversion (also a function decorator).

    Every collection walks every live container, and decoding a million decisions allocates tens of millions of
    them while keeping some (the candidate sets of the recent decisions): the collector made about 60 full
    passes over a growing heap and took 40% of the read. Decoded documents form no reference cycles, so nothing
    is left for it; it resumes afterwards (if it was enabled).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
