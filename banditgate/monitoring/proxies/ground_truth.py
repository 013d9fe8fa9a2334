"""Proxy ground truth: early reward kinds (authorisation, seconds) as noisy stand-ins for late ones.

The label that matters for a fraud-sensitive policy (a chargeback, 45-180 days later) is blind for months,
but the authorisation result of the same decision arrives within seconds. Comparing a reference window with
the current one:

- ``early_label_calibration`` (covers reliability): does the oracle still predict the authorisation rate it
  sees? With residuals ``u = y - p`` (early label minus the oracle's predicted authorisation probability of
  the chosen action), the statistic is the change in calibration-in-the-large beyond noise,
  ``max(0, |mean(u_cur) - mean(u_ref)| - z * SE)``, ``SE = sqrt(s2_ref / n_ref + s2_cur / n_cur)``. Taking
  the change rather than the current gap ignores a miscalibration the generation already had when trained;
  and since a covariate shift that the oracle anticipates moves ``mean(y)`` and ``mean(p)`` together, it does
  not move the residual: what the statistic picks up is authorisation behaviour the model did not expect.
  Brier scores and Brier skill (``1 - Brier / (ybar (1 - ybar))``) of both windows are in the detail.
- ``early_label_rate_shift`` (covers representativeness): the change in the authorisation rate beyond noise
  (the two-proportion shift of :mod:`.operational`), a sign of prior drift in the early label.
- ``retry_velocity_shift`` (covers reliability and representativeness; when retry counts are given): the
  noise-discounted total variation between the distributions of retry counts (bucketed 0, 1, 2, 3+).
  Bursts of retries (card testing, a merchant's retry logic changing) precede the fraud and chargebacks
  that arrive months later.

What an early signal can tell about late labels: only what moves both. A change in who pays, how issuers
respond or how payments are retried usually shows in authorisation first, and when the oracle stops
predicting authorisation, its chargeback counterpart, trained on the same logs, is unlikely to be fine.
What it cannot: a concept shift in chargeback risk that leaves authorisation unchanged (a fraud ring using
cards that issuers approve, friendly fraud rising after a policy change) is invisible here, and no
label-free proxy sees it; reports must say "not detectable without labels" for it, never "no drift".
Conversely an authorisation shift (an issuer outage) may leave chargeback risk untouched: the proxy is noisy
in both directions. Rates use the same ``z = 4`` noise band and absolute tolerances as the operational
proxies, for the same reason (daily checks at thousands to a million decisions must not alarm on noise).

Examples
--------
The authorisation rate falls from 90% to 80%; the oracle either did not see it coming, or predicted it (the
traffic moved to riskier contexts): only the first is a reliability problem.

>>> reference = EarlySignals(labels=[1] * 900 + [0] * 100, predicted=[0.9] * 1000)
>>> unexpected = EarlySignals(labels=[1] * 800 + [0] * 200, predicted=[0.9] * 1000)
>>> anticipated = EarlySignals(labels=[1] * 800 + [0] * 200, predicted=[0.8] * 1000)
>>> for r in ground_truth_proxies(reference, unexpected)[:2] + ground_truth_proxies(reference, anticipated):
...     print(r.name, r.status, round(r.statistic, 4))
early_label_calibration alert 0.0367
early_label_rate_shift alert 0.0361
early_label_calibration ok 0.0
early_label_rate_shift alert 0.0361
retry_velocity_shift unavailable nan

References
----------
"Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (proxy ground truth: early signals such
as authorisation results, velocity, early disputes); Cox, "Two further applications of a model for binary
regression", Biometrika 45(3/4), 1958 (calibration in the large); Brier, "Verification of forecasts expressed
in terms of probability", Monthly Weather Review 78(1), 1950.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import ArrayLike

from banditgate.monitoring.proxies.base import ProxyReading, reading, unavailable
from banditgate.monitoring.proxies.operational import discounted_total_variation, proportion_shift, too_few

CATEGORY = "proxy_ground_truth"
CALIBRATION, CALIBRATION_COVERS = "early_label_calibration", ("reliability",)
RATE, RATE_COVERS = "early_label_rate_shift", ("representativeness",)
RETRY, RETRY_COVERS = "retry_velocity_shift", ("reliability", "representativeness")


@dataclass(frozen=True, eq=False)
class EarlySignals:
    """One window's early signals (array-likes, stored as one-dimensional float arrays).

    Parameters
    ----------
    labels
        Early labels (authorisation: 1 authorised, 0 declined) of the decisions that have one.
    predicted
        The oracle's predicted authorisation probability of the chosen action on the same decisions, in
        order; None when the serving generation has no oracle (generation 0 is uniform).
    retries
        Retry count per decision (earlier attempts of the same payment), over all the window's decisions
        (not only the labelled ones); None when unknown.
    """

    labels: np.ndarray
    predicted: np.ndarray | None = None
    retries: np.ndarray | None = None

    def __post_init__(self) -> None:
        labels = _vector("labels", self.labels)
        if not np.isin(labels, (0.0, 1.0)).all():
            raise ValueError("labels must be 0 or 1")
        object.__setattr__(self, "labels", labels)
        if self.predicted is not None:
            predicted = _vector("predicted", self.predicted)
            if predicted.shape != labels.shape:
                raise ValueError(f"predicted has {predicted.size} values for {labels.size} labels; expected one each")
            if ((predicted < 0) | (predicted > 1)).any():
                raise ValueError("predicted probabilities must lie in [0, 1]")
            object.__setattr__(self, "predicted", predicted)
        if self.retries is not None:
            retries = _vector("retries", self.retries)
            if ((retries < 0) | (retries != np.round(retries))).any():
                raise ValueError("retries must be non-negative whole counts")
            object.__setattr__(self, "retries", retries)


@dataclass(frozen=True)
class GroundTruthLimits:
    """Noise band, minimum sizes, triggers and caps of the proxy-ground-truth readings.

    Defaults: 3 points of authorisation behaviour the oracle did not predict is an alert and 10 points reads
    0 (the same scale as the operational decline-rate shift); the rate shift alike; a retry-count TV of 0.05
    (one payment in twenty moving retry bucket) is an alert and 0.20 reads 0; retry counts of 3 and more
    share a bucket.
    """

    z: float = 4.0
    min_labels: int = 100
    calibration_trigger: float = 0.03
    calibration_cap: float = 0.10
    rate_trigger: float = 0.03
    rate_cap: float = 0.10
    retry_trigger: float = 0.05
    retry_cap: float = 0.20
    retry_buckets: int = 3

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("min_labels", "retry_buckets"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"{item.name} must be a positive integer, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError(f"{item.name} must be a positive finite number, got {value!r}")


def ground_truth_proxies(
    reference: EarlySignals, current: EarlySignals, limits: GroundTruthLimits | None = None
) -> list[ProxyReading]:
    """The three proxy-ground-truth readings of ``current`` against ``reference`` (see the module docstring)."""
    limits = limits or GroundTruthLimits()
    return [
        _calibration(reference, current, limits),
        _rate(reference, current, limits),
        _retry(reference, current, limits),
    ]


def _calibration(ref: EarlySignals, cur: EarlySignals, limits: GroundTruthLimits) -> ProxyReading:
    cap, trigger = limits.calibration_cap, limits.calibration_trigger
    if ref.predicted is None or cur.predicted is None:
        reason = f"no oracle predictions in the {'reference' if ref.predicted is None else 'current'} window"
        return unavailable(CALIBRATION, CATEGORY, reason, cap=cap, trigger=trigger, covers=CALIBRATION_COVERS)
    short = too_few(limits.min_labels, "early labels", ref.labels.size, cur.labels.size)
    if short:
        return unavailable(CALIBRATION, CATEGORY, short, cap=cap, trigger=trigger, covers=CALIBRATION_COVERS)
    u_ref, u_cur = ref.labels - ref.predicted, cur.labels - cur.predicted
    se = math.sqrt(u_ref.var(ddof=1) / u_ref.size + u_cur.var(ddof=1) / u_cur.size)
    change = float(u_cur.mean() - u_ref.mean())
    detail = {
        "reference_gap": float(u_ref.mean()),
        "current_gap": float(u_cur.mean()),
        "change": change,
        "standard_error": se,
        "z": limits.z,
        "reference": _brier(ref.labels, ref.predicted),
        "current": _brier(cur.labels, cur.predicted),
    }
    statistic = max(0.0, abs(change) - limits.z * se)
    return reading(CALIBRATION, CATEGORY, statistic, cap=cap, trigger=trigger, covers=CALIBRATION_COVERS, detail=detail)


def _rate(ref: EarlySignals, cur: EarlySignals, limits: GroundTruthLimits) -> ProxyReading:
    cap, trigger = limits.rate_cap, limits.rate_trigger
    short = too_few(limits.min_labels, "early labels", ref.labels.size, cur.labels.size)
    if short:
        return unavailable(RATE, CATEGORY, short, cap=cap, trigger=trigger, covers=RATE_COVERS)
    k_ref, n_ref, k_cur, n_cur = int(ref.labels.sum()), ref.labels.size, int(cur.labels.sum()), cur.labels.size
    detail = {
        "reference_rate": k_ref / n_ref,
        "current_rate": k_cur / n_cur,
        "reference": {"count": k_ref, "of": n_ref},
        "current": {"count": k_cur, "of": n_cur},
        "z": limits.z,
    }
    statistic = float(proportion_shift(k_ref, n_ref, k_cur, n_cur, limits.z))
    return reading(RATE, CATEGORY, statistic, cap=cap, trigger=trigger, covers=RATE_COVERS, detail=detail)


def _retry(ref: EarlySignals, cur: EarlySignals, limits: GroundTruthLimits) -> ProxyReading:
    cap, trigger = limits.retry_cap, limits.retry_trigger
    if ref.retries is None or cur.retries is None:
        reason = f"no retry counts in the {'reference' if ref.retries is None else 'current'} window"
        return unavailable(RETRY, CATEGORY, reason, cap=cap, trigger=trigger, covers=RETRY_COVERS)
    short = too_few(limits.min_labels, "decisions with retry counts", ref.retries.size, cur.retries.size)
    if short:
        return unavailable(RETRY, CATEGORY, short, cap=cap, trigger=trigger, covers=RETRY_COVERS)
    top = limits.retry_buckets
    names = [str(b) for b in range(top)] + [f"{top}+"]
    ref_counts = dict(zip(names, _bucket_counts(ref.retries, top), strict=True))
    cur_counts = dict(zip(names, _bucket_counts(cur.retries, top), strict=True))
    detail = {
        "reference_counts": ref_counts,
        "current_counts": cur_counts,
        "reference_mean": float(ref.retries.mean()),
        "current_mean": float(cur.retries.mean()),
        "z": limits.z,
    }
    statistic = discounted_total_variation(ref_counts, cur_counts, limits.z)
    return reading(RETRY, CATEGORY, statistic, cap=cap, trigger=trigger, covers=RETRY_COVERS, detail=detail)


def _brier(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """Brier score and Brier skill against the window's own base rate (None when every label is equal)."""
    brier = float(np.mean((predicted - labels) ** 2))
    base = float(labels.mean())
    climatology = base * (1.0 - base)
    return {"brier": brier, "brier_skill": 1.0 - brier / climatology if climatology > 0 else None}


def _bucket_counts(retries: np.ndarray, top: int) -> list[int]:
    """Counts of 0, 1, ..., top - 1 retries and of ``top`` or more."""
    return np.bincount(np.minimum(retries, top).astype(np.int64), minlength=top + 1).tolist()


def _vector(name: str, values: ArrayLike) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite (no NaN or infinity)")
    return array
