"""A simulated clock: the "now" of a simulation, moved forward explicitly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def require_aware(t: datetime, name: str = "time") -> datetime:
    """``t`` itself, or ``ValueError`` when it is naive (simulated times always carry a time zone)."""
    if not isinstance(t, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {t.isoformat()}")
    return t


def start_ending_at_present(days: int, now: datetime | None = None) -> datetime:
    """The start of a ``days``-day simulation whose last day ends at the last UTC midnight at or before ``now``.

    A run that ends at the present leaves its ledger where commands that read "as of now" (retraining,
    evaluation, the gate) find it: its last ``days`` days. Whole UTC days make two runs on the same day cover
    the same dates.

    Parameters
    ----------
    days
        Simulated days (positive).
    now
        The present (timezone-aware; default: the wall clock).

    Examples
    --------
    >>> start_ending_at_present(30, datetime(2026, 12, 6, 7, 15, tzinfo=UTC)).isoformat()
    '2026-11-06T00:00:00+00:00'
    """
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    now = datetime.now(UTC) if now is None else require_aware(now, "now").astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)


class SimulatedClock:
    """Simulated time that only moves forward when told to.

    Parameters
    ----------
    start
        Initial time (timezone-aware).

    Examples
    --------
    >>> from datetime import UTC
    >>> clock = SimulatedClock(datetime(2026, 1, 5, tzinfo=UTC))
    >>> clock.advance(timedelta(hours=36)).isoformat(), clock.days
    ('2026-01-06T12:00:00+00:00', 1.5)
    >>> clock.advance_to(datetime(2026, 1, 6, tzinfo=UTC))
    Traceback (most recent call last):
    ...
    ValueError: the clock cannot go back from 2026-01-06T12:00:00+00:00 to 2026-01-06T00:00:00+00:00
    """

    def __init__(self, start: datetime) -> None:
        self.start = require_aware(start, "start")
        self._now = start

    @property
    def now(self) -> datetime:
        """The current simulated time."""
        return self._now

    @property
    def elapsed(self) -> timedelta:
        """Simulated time since the start."""
        return self._now - self.start

    @property
    def days(self) -> float:
        """Simulated days since the start."""
        return self.elapsed / timedelta(days=1)

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` (not negative) and return the new time."""
        if delta < timedelta(0):
            raise ValueError(f"the clock cannot go back (delta {delta})")
        self._now = self._now + delta
        return self._now

    def advance_to(self, t: datetime) -> datetime:
        """Move forward to ``t`` (not earlier than now) and return it."""
        require_aware(t)
        if t < self._now:
            raise ValueError(f"the clock cannot go back from {self._now.isoformat()} to {t.isoformat()}")
        self._now = t
        return self._now

    def __repr__(self) -> str:
        return f"SimulatedClock(now={self._now.isoformat()})"
