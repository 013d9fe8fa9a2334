"""Hour-of-day and day-of-week patterns: how much traffic arrives, and what kind.

Volume follows a European e-commerce curve (quiet from 01:00 to 06:00, a lunch bump, an evening peak around
20:00, a busier Friday and Saturday). The mix moves with the hour too: shops and restaurants by day, taxis at
night, commuting at rush hours, subscription billing runs after midnight, and American cardholders show up in
the European evening and night when it is daytime for them.

All profiles are expressed in the world's local time (``hour`` 0-23, ``weekday`` 0 = Monday) and normalised to
a mean of 1.
"""

from __future__ import annotations

import numpy as np

#: Relative transaction volume per local hour (mean 1).
HOUR_VOLUME = np.array(
    [0.35, 0.22, 0.15, 0.12, 0.12, 0.18, 0.35, 0.65, 0.95, 1.15, 1.25, 1.35,
     1.45, 1.40, 1.30, 1.25, 1.30, 1.40, 1.55, 1.70, 1.75, 1.60, 1.20, 0.70]
)  # fmt: skip
HOUR_VOLUME = HOUR_VOLUME / HOUR_VOLUME.mean()

#: Relative transaction volume per weekday, Monday first (mean 1).
WEEKDAY_VOLUME = np.array([0.95, 0.95, 0.97, 1.00, 1.08, 1.07, 0.98])
WEEKDAY_VOLUME = WEEKDAY_VOLUME / WEEKDAY_VOLUME.mean()

_HOURS = np.arange(24)


def _bumps(*peaks: tuple[float, float, float], base: float = 0.1) -> np.ndarray:
    """A daily profile made of Gaussian bumps (centre hour, width in hours, height), circular over 24 h."""
    profile = np.full(24, base)
    for centre, width, height in peaks:
        distance = np.minimum(np.abs(_HOURS - centre), 24 - np.abs(_HOURS - centre))
        profile += height * np.exp(-0.5 * (distance / width) ** 2)
    return profile / profile.mean()


#: Activity shapes of merchant categories: (hourly profile, weekday profile), both mean 1.
ACTIVITY_SHAPES: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "online": (HOUR_VOLUME, WEEKDAY_VOLUME),
    "retail": (_bumps((11, 2.5, 1.0), (16.5, 2.5, 1.2), base=0.03), np.array([1.0, 1.0, 1.0, 1.05, 1.15, 1.3, 0.5])),
    "dining": (_bumps((12.5, 1.2, 1.0), (19.5, 1.8, 1.4), base=0.05), np.array([0.8, 0.85, 0.9, 1.0, 1.25, 1.3, 0.9])),
    "commute": (
        _bumps((8, 1.0, 1.3), (17.5, 1.3, 1.1), base=0.08),
        np.array([1.15, 1.15, 1.15, 1.15, 1.1, 0.65, 0.55]),
    ),
    "nightlife": (_bumps((23, 2.5, 1.0), (8, 1.5, 0.3), base=0.1), np.array([0.7, 0.7, 0.8, 0.9, 1.3, 1.5, 1.0])),
    "billing": (_bumps((2.5, 1.5, 2.5), base=0.6), np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])),
}


def shape_weights(shape: str) -> np.ndarray:
    """Relative activity of a shape at each (hour, weekday): shape (24, 7).

    Multiplying each category's base share by its activity and renormalising over categories gives the mix
    at that hour and weekday.

    >>> w = shape_weights("billing")
    >>> bool(w[3, 0] > 3 * w[14, 0])  # billing runs at night
    True
    """
    hourly, weekly = ACTIVITY_SHAPES[shape]
    return np.outer(hourly, weekly)


def country_activity(utc_offsets: np.ndarray, world_utc_offset: int = 1) -> np.ndarray:
    """How active each country's cardholders are at each world-local hour: shape (24, n_countries), mean 1.

    A country's cardholders shop along the online volume curve of their own local time.

    >>> a = country_activity(np.array([1, -5]))
    >>> bool(a[3, 1] > a[3, 0])  # 03:00 in Amsterdam is 21:00 in New York
    True
    """
    local = (_HOURS[:, None] - world_utc_offset + np.asarray(utc_offsets)[None, :]) % 24
    return HOUR_VOLUME[local]


def local_time_fields(utc_micros: np.ndarray, tz_offsets_seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local hour (0-23) and weekday (0 = Monday) of UTC timestamps (microseconds since 1970) and offsets.

    >>> hour, weekday = local_time_fields(np.array([0, 3_600_000_000 * 24 * 4]), np.array([3600, 3600]))
    >>> hour.tolist(), weekday.tolist()  # 1970-01-01 was a Thursday
    ([1, 1], [3, 0])
    """
    local_seconds = np.asarray(utc_micros) // 1_000_000 + np.asarray(tz_offsets_seconds)
    hour = (local_seconds // 3600) % 24
    weekday = (local_seconds // 86400 + 3) % 7
    return hour.astype(np.int64), weekday.astype(np.int64)
