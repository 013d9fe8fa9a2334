"""The four dimensions of a window of decisions, overall and per segment (e.g. issuer country x action).

Input: an *evidence frame*, one row per decision of the window (for one policy, generation and judged
reward kind), with the columns

- ``labelled`` (bool): a matured label of the judged reward kind exists;
- ``label`` (float): that label, 0 or 1, NaN when not labelled; only reliability reads it, on scored
  decisions, so it may be NaN where ``score`` is (a reader can then fetch label values for a sample only);
- ``label_observed_at`` (datetime64[ns, UTC]): when the label was observed, NaT when not labelled;
- ``score`` (float): the oracle's predicted probability for the chosen action, NaN without an oracle;
- segment columns (e.g. ``issuer_country``, ``action_id``) for :func:`segment_dimensions`.

Everything is read as of ``as_of``: a label observed after it counts as not (yet) arrived, for completeness,
freshness and reliability alike, so a gate evaluation replayed as of its time reproduces itself.

Per segment, the dimensions are those of the segment's rows alone, against a shared reference score
distribution or one per segment. A segment with fewer than ``min_size`` decisions is reported (with its
measurements) but not counted (``counted=False``): too few decisions to judge it either way.

The frame is sorted once by (segment, score), so every segment is a contiguous block with its scores in
order; each dimension then costs ``O(rows)`` per segment plus a bootstrap whose cost does not depend on the
rows (see :mod:`.reliability`). A shared reference distribution is sorted once, and its distribution
function evaluated once at every production score (one pass of binary searches with sorted keys), which is
all the KS distance of each segment needs (:func:`.ks_at_points`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from banditgate.monitoring.dimensions.base import (
    NAT,
    DimensionSet,
    Instant,
    Measurement,
    instant_ns,
    integer_parameter,
    times_ns,
    undefined,
)
from banditgate.monitoring.dimensions.completeness import completeness
from banditgate.monitoring.dimensions.freshness import freshness_ns
from banditgate.monitoring.dimensions.reliability import reliability
from banditgate.monitoring.dimensions.representativeness import (
    ks_at_points,
    ks_statistic_sorted,
    representativeness_from_ks,
    sorted_scores,
)
from banditgate.policies.exploration.base import number_parameter

#: The columns every evidence frame has (besides its segment columns).
EVIDENCE_COLUMNS = ("labelled", "label", "label_observed_at", "score")

#: Reference scores: one array for the whole window / every segment, or one per segment key (a tuple of the
#: segment's values in the order of ``by``; the bare value is accepted when segmenting by one column).
References = ArrayLike | Mapping[Any, ArrayLike] | None


@dataclass(frozen=True)
class SegmentDimensions:
    """The dimensions of one segment of a window.

    Parameters
    ----------
    segment
        The segment's values by column, e.g. ``{"issuer_country": "NL", "action_id": "route_a"}`` (None for
        a missing value).
    decisions
        Decisions of the window in the segment.
    counted
        False when the segment is below its minimum size: reported, not counted.
    dimensions
        Completeness, freshness, reliability and representativeness of the segment's rows.
    reason
        Why the segment is not counted, None when it is.
    """

    segment: Mapping[str, Any]
    decisions: int
    counted: bool
    dimensions: DimensionSet
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment": dict(self.segment),
            "decisions": self.decisions,
            "counted": self.counted,
            "reason": self.reason,
            "dimensions": self.dimensions.to_dict(),
        }


@dataclass(frozen=True)
class _Settings:
    as_of_ns: int
    lambda_per_day: float
    recent: int
    ks_cap: float
    metric: str
    params: Mapping[str, Any]
    confidence: float


@dataclass(frozen=True)
class _Evidence:
    """The evidence columns as arrays, in the order of the sort (labelled already read as of ``as_of``).

    ``reference_at`` / ``reference_before``: the shared reference distribution function at each score and
    just left of it (empty without a shared reference).
    """

    labelled: np.ndarray
    label: np.ndarray
    observed: np.ndarray
    score: np.ndarray
    reference_at: np.ndarray
    reference_before: np.ndarray


def window_dimensions(
    frame: pd.DataFrame,
    *,
    as_of: Instant,
    lambda_per_day: float,
    reference_scores: ArrayLike | None = None,
    ks_cap: float = 0.30,
    reliability_metric: str = "f1",
    reliability_params: Mapping[str, Any] | None = None,
    recent: int = 500,
    confidence: float = 0.95,
) -> DimensionSet:
    """Completeness, freshness, reliability and representativeness of the whole window.

    Parameters
    ----------
    frame
        The evidence frame (see the module docstring).
    as_of
        The time the evidence is judged at.
    lambda_per_day, recent
        Freshness decay rate and how many recent labels its median is taken over (:func:`.freshness`).
    reference_scores
        The reference score distribution for representativeness; None reads P as undefined (0).
    ks_cap
        See :func:`.representativeness`.
    reliability_metric, reliability_params
        One of ``f1``, ``brier_skill``, ``calibration`` and its parameters (e.g. ``{"threshold": 0.3}``,
        ``{"n_boot": 500, "seed": 1}``), see :func:`.reliability`.
    confidence
        Level of every interval.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({
    ...     "labelled": [True, True, False, False],
    ...     "label": [1.0, 0.0, float("nan"), float("nan")],
    ...     "label_observed_at": pd.to_datetime(["2026-01-10", "2026-01-12", None, None], utc=True),
    ...     "score": [0.8, 0.3, 0.6, 0.2],
    ... })
    >>> dims = window_dimensions(frame, as_of="2026-01-21", lambda_per_day=0.02, reference_scores=[0.2, 0.3, 0.6, 0.8])
    >>> dims.completeness.value, round(dims.freshness.value, 4), dims.reliability.value, dims.representativeness.value
    (0.5, 0.8187, 1.0, 1.0)
    """
    settings = _settings(as_of, lambda_per_day, recent, ks_cap, reliability_metric, reliability_params, confidence)
    if isinstance(reference_scores, Mapping):
        raise ValueError("reference_scores for a whole window must be one array of scores, not a mapping")
    reference = _sorted_reference(reference_scores)
    evidence, _ = _evidence(frame, settings.as_of_ns, np.zeros(len(frame), dtype=np.int64), reference)
    return _measure(evidence, reference, settings)


def segment_dimensions(
    frame: pd.DataFrame,
    by: Sequence[str],
    *,
    min_size: int,
    as_of: Instant,
    lambda_per_day: float,
    reference_scores: References = None,
    ks_cap: float = 0.30,
    reliability_metric: str = "f1",
    reliability_params: Mapping[str, Any] | None = None,
    recent: int = 500,
    confidence: float = 0.95,
) -> list[SegmentDimensions]:
    """The dimensions of every segment of the window, in the order of the segment values.

    ``by`` names the segment columns; a missing value forms its own segment. ``min_size`` is the number of
    decisions a segment needs to count. ``reference_scores`` is one array shared by every segment, or a
    mapping from segment key to that segment's reference scores (a segment missing from it reads P as
    undefined). The other parameters are those of :func:`window_dimensions`.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({
    ...     "labelled": [True, False, True, True, False],
    ...     "label": [1.0, float("nan"), 0.0, 1.0, float("nan")],
    ...     "label_observed_at": pd.to_datetime(["2026-01-10", None, "2026-01-11", "2026-01-12", None], utc=True),
    ...     "score": [0.9, 0.2, 0.1, 0.7, 0.4],
    ...     "issuer_country": ["DE", "DE", "NL", "NL", "NL"],
    ... })
    >>> rows = segment_dimensions(frame, ["issuer_country"], min_size=3, as_of="2026-01-20", lambda_per_day=0.02)
    >>> [(r.segment["issuer_country"], r.decisions, r.counted, round(r.dimensions.completeness.value, 4)) for r in rows]
    [('DE', 2, False, 0.5), ('NL', 3, True, 0.6667)]
    >>> rows[0].reason
    'below minimum size 2 < 3'
    """
    settings = _settings(as_of, lambda_per_day, recent, ks_cap, reliability_metric, reliability_params, confidence)
    min_size = integer_parameter("min_size", min_size, 1)
    by = _segment_columns(frame, by)
    grouped = frame.groupby(by, sort=True, dropna=False, observed=True)
    sizes = grouped.size()
    shared = None if isinstance(reference_scores, Mapping) else _sorted_reference(reference_scores)
    evidence, starts = _evidence(frame, settings.as_of_ns, grouped.ngroup().to_numpy(dtype=np.int64), shared)
    result = []
    for group, (key, size) in enumerate(sizes.items()):
        values = key if isinstance(key, tuple) else (key,)
        if isinstance(reference_scores, Mapping):
            reference: np.ndarray | str | None = _segment_reference(reference_scores, values)
        else:
            reference = shared
        block = slice(starts[group], starts[group + 1])
        # The reference arrays are empty without a shared reference, and stay so when sliced.
        rows = _Evidence(*(getattr(evidence, f.name)[block] for f in dataclasses.fields(_Evidence)))
        counted = size >= min_size
        result.append(
            SegmentDimensions(
                segment={column: _plain(value) for column, value in zip(by, values, strict=True)},
                decisions=int(size),
                counted=counted,
                dimensions=_measure(rows, reference, settings),
                reason=None if counted else f"below minimum size {size} < {min_size}",
            )
        )
    return result


def _settings(
    as_of: Instant,
    lambda_per_day: float,
    recent: int,
    ks_cap: float,
    metric: str,
    params: Mapping[str, Any] | None,
    confidence: float,
) -> _Settings:
    settings = _Settings(
        as_of_ns=instant_ns(as_of),
        lambda_per_day=number_parameter("lambda_per_day", lambda_per_day, low=0.0),
        recent=integer_parameter("recent", recent, 1),
        ks_cap=ks_cap,
        metric=metric,
        params=dict(params or {}),
        confidence=confidence,
    )
    # Dry runs on empty input check the metric, its parameters, ks_cap and confidence before any segment is
    # measured, so a bad parameter fails the same way whatever the data.
    reliability(np.empty(0), np.empty(0), metric, confidence=confidence, **settings.params)
    representativeness_from_ks(None, 0, 0, ks_cap, confidence)
    return settings


def _segment_columns(frame: pd.DataFrame, by: Sequence[str]) -> list[str]:
    columns = [by] if isinstance(by, str) else list(by)
    if not columns:
        raise ValueError("by must name at least one segment column")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"segment columns {missing} are not in the evidence frame")
    return columns


def _evidence(
    frame: pd.DataFrame, as_of_ns: int, codes: np.ndarray, reference: np.ndarray | None
) -> tuple[_Evidence, np.ndarray]:
    """The validated evidence columns sorted by (segment code, score), and where each segment starts."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"the evidence must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in EVIDENCE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"the evidence frame lacks the columns {missing}")
    if not pd.api.types.is_bool_dtype(frame["labelled"].dtype) or frame["labelled"].isna().any():
        raise ValueError(f"'labelled' must be a boolean column without missing values, got {frame['labelled'].dtype}")
    labelled = frame["labelled"].to_numpy(dtype=bool)
    label = _floats(frame, "label")
    score = _floats(frame, "score")
    observed = times_ns(frame["label_observed_at"], "label_observed_at")
    if (observed[labelled] == NAT).any():
        raise ValueError("every labelled decision needs its label_observed_at")
    judged = labelled & ~np.isnan(score)
    if not ((label[judged] == 0.0) | (label[judged] == 1.0)).all():
        raise ValueError("every labelled decision with a score needs a label of 0 or 1")
    # numpy sorts NaN last, so each segment's finite scores come first and in order.
    by_score = np.argsort(score)
    # A stable sort of small integers is a radix sort in numpy: linear instead of n log n.
    narrow = np.uint16 if codes.size == 0 or codes.max() < 2**16 else np.int64
    by_segment = np.argsort(codes[by_score].astype(narrow), kind="stable")
    order = by_score[by_segment]
    starts = np.searchsorted(codes[order], np.arange(codes.max(initial=-1) + 2))
    if reference is None or reference.size == 0:
        reference_at = reference_before = np.empty(0)
    else:
        # Keys in score order make the binary searches walk the reference once, cache-friendly.
        ranked = score[by_score]
        reference_at, reference_before = (
            (np.searchsorted(reference, ranked, side=side) / reference.size)[by_segment] for side in ("right", "left")
        )
    labelled = labelled & (observed <= as_of_ns)
    evidence = _Evidence(labelled[order], label[order], observed[order], score[order], reference_at, reference_before)
    return evidence, starts


def _floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    try:
        return frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise ValueError(f"{column!r} must be a numeric column, got {frame[column].dtype}") from None


def _measure(rows: _Evidence, reference: np.ndarray | str | None, settings: _Settings) -> DimensionSet:
    """The four dimensions of one block of rows; ``reference`` is sorted scores, or why there are none."""
    labelled = rows.labelled
    scored = ~np.isnan(rows.score)
    return DimensionSet(
        completeness=completeness(int(np.count_nonzero(labelled)), labelled.size, settings.confidence),
        freshness=freshness_ns(
            rows.observed[labelled], settings.as_of_ns, settings.lambda_per_day, settings.recent, settings.confidence
        ),
        reliability=_reliability(rows, labelled & scored, settings),
        representativeness=_representativeness(rows, int(np.count_nonzero(scored)), reference, settings),
    )


def _reliability(rows: _Evidence, usable: np.ndarray, settings: _Settings) -> Measurement:
    unscored = int(np.count_nonzero(rows.labelled & ~usable))
    if unscored and not usable.any():
        return undefined(
            "reliability", "the labelled decisions have no oracle score", unscored, labelled_without_score=unscored
        )
    measured = reliability(
        rows.label[usable], rows.score[usable], settings.metric, confidence=settings.confidence, **settings.params
    )
    return dataclasses.replace(measured, detail={**measured.detail, "labelled_without_score": unscored})


def _representativeness(
    rows: _Evidence, scored: int, reference: np.ndarray | str | None, settings: _Settings
) -> Measurement:
    """P of the block's ``scored`` finite scores (its first, in order) against the sorted reference."""
    if reference is None:
        reference = "no reference scores"
    if isinstance(reference, str):
        return undefined("representativeness", reference, scored, n_production=scored)
    scores = rows.score[:scored]
    if scored == 0 or reference.size == 0:
        distance = None
    elif rows.reference_at.size:
        distance = ks_at_points(scores, rows.reference_at[:scored], rows.reference_before[:scored])
    else:
        distance = ks_statistic_sorted(reference, scores)
    return representativeness_from_ks(distance, reference.size, scored, settings.ks_cap, settings.confidence)


def _sorted_reference(scores: ArrayLike | None) -> np.ndarray | None:
    return None if scores is None else sorted_scores("reference_scores", scores)


def _segment_reference(references: Mapping[Any, Any], values: tuple[Any, ...]) -> np.ndarray | str:
    if values in references:
        return sorted_scores("reference_scores", references[values])
    if len(values) == 1 and values[0] in references:
        return sorted_scores("reference_scores", references[values[0]])
    return "no reference scores for this segment"


def _plain(value: Any) -> Any:
    """A segment value as a JSON-friendly Python value (None when missing)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value
