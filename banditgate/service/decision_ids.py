"""Fresh decision ids for requests that bring none, at a fraction of ``uuid4``'s cost on the decision path.

An id is a version-4 UUID string whose first 74 random bits are drawn once per process (again in a forked
child) and whose last 48 bits count the process's decisions: unique within a process by construction, and
across processes unless two of them draw the same 74 bits. ``str(uuid.uuid4())`` costs about 7 us (a
system call and an object per id); this costs well under a microsecond.

>>> ids = DecisionIds()
>>> first, second = ids.next(), ids.next()
>>> first != second and uuid.UUID(first).version == uuid.UUID(second).version == 4
True
"""

from __future__ import annotations

import itertools
import os
import uuid


class DecisionIds:
    """A source of fresh, unique decision ids (see the module docstring)."""

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]  # 8-4-4-4 hex digits and dashes, version and variant set
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFF_FFFF_FFFF:012x}"
