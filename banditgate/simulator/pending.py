"""A queue of future reward events, released in time order as the simulated clock passes them."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime

from banditgate.simulator.clock import require_aware
from banditgate.simulator.outcomes import RewardEvent


class PendingEvents:
    """Reward events waiting for their ``observed_at``: a heap keyed by observation time.

    Events observed at the same instant come out in the order they were pushed.

    Examples
    --------
    >>> from datetime import UTC, timedelta
    >>> t0 = datetime(2026, 1, 5, tzinfo=UTC)
    >>> queue = PendingEvents()
    >>> queue.extend(
    ...     RewardEvent(f"tx-{i}", "authorisation", 1.0, timedelta(seconds=s), t0 + timedelta(seconds=s))
    ...     for i, s in enumerate([3.0, 1.0, 2.0])
    ... )
    >>> [e.decision_id for e in queue.drain(t0 + timedelta(seconds=2))], len(queue)
    (['tx-1', 'tx-2'], 1)
    >>> queue.next_at() == t0 + timedelta(seconds=3)
    True
    """

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, RewardEvent]] = []
        self._pushed = 0

    def push(self, event: RewardEvent) -> None:
        """Hold an event until its ``observed_at``."""
        heapq.heappush(self._heap, (event.observed_at, self._pushed, event))
        self._pushed += 1

    def extend(self, events: Iterable[RewardEvent]) -> None:
        """Hold several events."""
        for event in events:
            self.push(event)

    def drain(self, now: datetime) -> list[RewardEvent]:
        """Remove and return every event observed at or before ``now``, earliest first."""
        require_aware(now, "now")
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def drain_all(self) -> list[RewardEvent]:
        """Remove and return every event, earliest first (e.g. to fast-forward past the last label)."""
        out = [heapq.heappop(self._heap)[2] for _ in range(len(self._heap))]
        return out

    def next_at(self) -> datetime | None:
        """When the next event is observed, or ``None`` if nothing is pending."""
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)
