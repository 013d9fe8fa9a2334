"""The four evidence-sufficiency dimensions, measured on data: completeness, freshness, reliability and
representativeness, each a :class:`Measurement` in [0, 1] with an interval.

- :func:`completeness`: labelled / total decisions, Wilson interval;
- :func:`freshness`: ``exp(-lambda * dt)`` from the median time of the most recent labels;
- :func:`reliability`: the model's quality on labelled decisions (F1, Brier skill or ``1 - ECE``), bootstrap
  interval;
- :func:`representativeness`: ``max(0, 1 - KS / KS_cap)`` between reference and production scores, DKW
  interval;
- :func:`window_dimensions` / :func:`segment_dimensions`: all four on an evidence frame, overall or per
  segment, with a minimum segment size.
"""

from __future__ import annotations

from banditgate.monitoring.dimensions.base import DIMENSIONS, DimensionSet, Measurement
from banditgate.monitoring.dimensions.completeness import completeness
from banditgate.monitoring.dimensions.freshness import freshness
from banditgate.monitoring.dimensions.reliability import (
    RELIABILITY_METRICS,
    brier_skill_reliability,
    calibration_reliability,
    f1_reliability,
    reliability,
)
from banditgate.monitoring.dimensions.representativeness import ks_statistic, representativeness
from banditgate.monitoring.dimensions.segments import (
    EVIDENCE_COLUMNS,
    SegmentDimensions,
    segment_dimensions,
    window_dimensions,
)

__all__ = [
    "DIMENSIONS",
    "EVIDENCE_COLUMNS",
    "RELIABILITY_METRICS",
    "DimensionSet",
    "Measurement",
    "SegmentDimensions",
    "brier_skill_reliability",
    "calibration_reliability",
    "completeness",
    "f1_reliability",
    "freshness",
    "ks_statistic",
    "reliability",
    "representativeness",
    "segment_dimensions",
    "window_dimensions",
]
