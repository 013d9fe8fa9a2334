"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: JSON on SQLite, JSONB on PostgreSQL (indexable, compact).
JSONDocument = JSON().with_variant(JSONB(), "postgresql")

#: Every time taken from outside (an as-of time, a reward's ``observed_at``, a stated request time) lies in
#: ``[EARLIEST_TIME, LATEST_TIME)``: the gate's and the pipelines' arithmetic (windows of up to ten years before
#: as-of, forecasts after it) stays inside pandas' nanosecond timestamps (1677-2262) and every backend's range.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2200, 1, 1, tzinfo=UTC)


def check_time(value: datetime) -> datetime:
    """``value`` if it lies in the supported range, else a :class:`ValueError` saying what the range is.

    >>> try:
    ...     check_time(datetime(9999, 12, 31, tzinfo=UTC))
    ... except ValueError as exc:
    ...     print(exc)
    9999-12-31T00:00:00+00:00 is outside the supported range [1970-01-01T00:00:00+00:00, 2200-01-01T00:00:00+00:00)
    """
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} has no timezone")
    if not EARLIEST_TIME <= value < LATEST_TIME:
        raise ValueError(
            f"{value.isoformat()} is outside the supported range "
            f"[{EARLIEST_TIME.isoformat()}, {LATEST_TIME.isoformat()})"
        )
    return value


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite has no timezone support and hands back naive datetimes; this stores UTC and always returns an
    aware datetime, so comparisons never mix naive and aware values.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
