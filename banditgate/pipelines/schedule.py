"""Running a job on a fixed interval (``banditgate retrain --every 24h``)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import timedelta

log = logging.getLogger(__name__)

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_interval(text: str) -> timedelta:
    """``"24h"``, ``"30m"``, ``"1d"``, ``"90s"`` as a timedelta.

    >>> parse_interval("24h"), parse_interval("1.5d")
    (datetime.timedelta(days=1), datetime.timedelta(days=1, seconds=43200))
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"interval {text!r}: expected a positive number and a unit s, m, h or d (e.g. 24h)")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def run_every(interval: timedelta, job: Callable[[], None], runs: int | None = None) -> None:
    """Run ``job`` now and then every ``interval`` (start to start), ``runs`` times or forever.

    A failing run is logged and the schedule goes on: one bad night must not stop retraining for good.
    """
    count = 0
    while runs is None or count < runs:
        started = time.monotonic()
        try:
            job()
        except Exception:
            log.exception("scheduled run failed; next run in %s", interval)
        count += 1
        if runs is not None and count >= runs:
            return
        time.sleep(max(0.0, interval.total_seconds() - (time.monotonic() - started)))
