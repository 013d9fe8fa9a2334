"""The time of a request: the wall clock, or a simulated one for simulations and replays.

With ``simulated_clock`` enabled (``BANDITGATE_SIMULATED_CLOCK=true``), a client may state the time of its
request in the ``X-Banditgate-Time`` header (ISO 8601 with a timezone). The simulator uses it to run 90 days
of traffic in minutes, so that decisions, rewards and label delays carry simulated timestamps. A production
server refuses the header rather than ignoring it, so that a misconfigured replay cannot pass unnoticed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import HTTPException, Request

from banditgate.ledger.types import check_time
from banditgate.service.settings import Settings

TIME_HEADER = "x-banditgate-time"


def now_ms() -> datetime:
    """Now, truncated to the millisecond the API reports, so a replayed response is byte-identical."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def request_time(request: Request, settings: Settings) -> datetime:
    """The time of ``request``, truncated to the millisecond."""
    return stated_time(request, settings) or now_ms()


def stated_time(request: Request, settings: Settings) -> datetime | None:
    """The time the client stated for ``request``, truncated to the millisecond; ``None`` if it stated none."""
    stated = request.headers.get(TIME_HEADER)
    if stated is None:
        return None
    if not settings.simulated_clock:
        raise HTTPException(422, "X-Banditgate-Time is only accepted when BANDITGATE_SIMULATED_CLOCK=true")
    try:
        when = datetime.fromisoformat(stated)
        if when.tzinfo is None:
            raise ValueError("no timezone")
        when = check_time(when.astimezone(UTC))
    except (ValueError, OverflowError) as exc:
        raise HTTPException(422, f"X-Banditgate-Time: not an ISO 8601 time with a timezone ({exc})") from None
    return when.replace(microsecond=when.microsecond // 1000 * 1000)
