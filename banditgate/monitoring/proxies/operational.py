"""Operational signals: decline, exploration, fallback and error rates, and the action mix.

Five label-free readings from what the service logs anyway, comparing a reference window with the current one:

- ``decline_rate_shift``: change in the authorisation decline rate (declines / authorisation-labelled
  decisions). Covers reliability (issuers declining differently is the first visible sign that what the
  oracle learnt about authorisation no longer holds) and representativeness (a different mix of payments).
- ``exploration_share_shift``: change in the share of decisions whose chosen action was not the greedy one.
  Under inverse-gap weighting the share follows the oracle's score gaps on the contexts it sees, so it moves
  when the traffic lands where the model is more or less decisive: covers representativeness.
- ``fallback_rate``: decisions the generation under evaluation did not serve itself (its oracle failed and
  the decision fell back to the uniform rule, or another generation served it). Covers reliability (the
  model breaks on part of the traffic) and representativeness (the window's decisions are not the
  generation's).
- ``error_rate``: failed requests / (decisions + failed requests). Failed requests are payments that left no
  decision and will never have a label, the window's evidence misses them: covers completeness.
- ``action_mix_shift``: total-variation distance between the action shares, over the union of the actions.
  ``TV = 1/2 sum_a |q_a - p_a|`` is the share of decisions that would have to change action to turn one mix
  into the other. Covers representativeness.

Sampling noise. A window holds thousands to a million decisions and the gate runs daily, so a raw difference
would alarm on noise in small windows and on irrelevant wiggles (a 0.2 point decline-rate change, weekday
effects) in large ones. Shifts are therefore measured beyond a noise band::

    shift = max(0, |q - p| - z * SE0),   SE0 = sqrt(pbar * (1 - pbar) * (1/n_ref + 1/n_cur))

with ``pbar`` the pooled proportion (the standard error of the difference if nothing changed), and a reading
is in alert when ``shift >= trigger``, i.e. when the difference is both beyond ``z`` standard errors and
beyond the absolute tolerance ``trigger``. With ``z = 4`` a two-sided test has a false-positive rate of
6.3e-5, so five proxies checked daily for 30 days (150 tests) raise a spurious alert from sampling noise
with probability below 1%; the tolerance absorbs what the binomial model does not (seasonality, weekday
mix). The action mix is discounted per action, ``1/2 sum_a max(0, |q_a - p_a| - z * SE0_a)``, which is at
most the TV and tends to it as the windows grow. Rates of the current window alone (fallbacks, errors) use
the Wilson lower bound at the same ``z``: the rate we are confident the window has at least.

The reference should be a window served by the same generation (e.g. its first days in production):
against a window served by its predecessor, a new policy's own choices (another action mix, another
exploration level, hopefully fewer declines) read as shifts.

Examples
--------
>>> ref = OperationalCounts(decisions=100_000, authorisation_labelled=100_000, declines=10_000,
...                         explored=8_000, fallbacks=10, action_counts={"a": 60_000, "b": 40_000})
>>> cur = OperationalCounts(decisions=100_000, authorisation_labelled=100_000, declines=15_000,
...                         explored=8_100, fallbacks=20, action_counts={"a": 40_000, "b": 60_000})
>>> for r in operational_proxies(ref, cur):
...     print(r.name, r.status, round(r.statistic, 4))
decline_rate_shift alert 0.0441
exploration_share_shift ok 0.0
fallback_rate ok 0.0001
error_rate unavailable nan
action_mix_shift alert 0.1911

References
----------
"Evidence sufficiency under delayed ground truth", arXiv 2604.15740 (operational signals as proxy
indicators); Wilson, "Probable inference, the law of succession, and statistical inference", JASA 22(158),
1927; Levin, Peres & Wilmer, *Markov Chains and Mixing Times*, section 4.1 (total variation distance), 2009.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from banditgate.monitoring.proxies.base import ProxyReading, reading, unavailable

CATEGORY = "operational"


@dataclass(frozen=True)
class OperationalCounts:
    """What one window's decisions did, as counts.

    Parameters
    ----------
    decisions
        Decisions logged in the window.
    authorisation_labelled
        Decisions whose authorisation reward has arrived.
    declines
        Authorisation rewards equal to 0 among those.
    explored
        Decisions whose chosen action was not the greedy one.
    fallbacks
        Decisions not served by the generation under evaluation (its oracle failed and the uniform fallback
        decided, or another generation served it).
    errors
        Failed requests (no decision logged), or None when the window does not know.
    action_counts
        Chosen-action id -> number of decisions; sums to ``decisions`` (empty when unknown).
    """

    decisions: int
    authorisation_labelled: int
    declines: int
    explored: int
    fallbacks: int
    errors: int | None = None
    action_counts: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("decisions", "authorisation_labelled", "declines", "explored", "fallbacks"):
            object.__setattr__(self, name, _count(name, getattr(self, name)))
        if self.errors is not None:
            object.__setattr__(self, "errors", _count("errors", self.errors))
        counts = {str(action): _count(f"action_counts[{action!r}]", n) for action, n in self.action_counts.items()}
        object.__setattr__(self, "action_counts", counts)
        for name in ("authorisation_labelled", "explored", "fallbacks"):
            if getattr(self, name) > self.decisions:
                raise ValueError(f"{name} ({getattr(self, name)}) cannot exceed decisions ({self.decisions})")
        if self.declines > self.authorisation_labelled:
            raise ValueError(
                f"declines ({self.declines}) cannot exceed authorisation_labelled ({self.authorisation_labelled})"
            )
        if counts and sum(counts.values()) != self.decisions:
            raise ValueError(f"action_counts sum to {sum(counts.values())}, expected decisions = {self.decisions}")

    @classmethod
    def from_decisions(
        cls,
        actions: ArrayLike,
        explored: ArrayLike,
        fallback: ArrayLike,
        authorisation: ArrayLike,
        errors: int | None = None,
    ) -> OperationalCounts:
        """Counts from per-decision arrays (vectorised; a million decisions take well under a second).

        Parameters
        ----------
        actions
            Chosen action id per decision.
        explored, fallback
            Boolean per decision.
        authorisation
            Authorisation reward per decision: 1, 0, or NaN while it has not arrived.

        >>> OperationalCounts.from_decisions(["a", "b", "a"], [False, True, False], [False, False, True],
        ...                                  [1.0, 0.0, float("nan")]).action_counts
        {'a': 2, 'b': 1}
        """
        chosen = pd.Series(np.asarray(actions), dtype=object)
        explored_mask = _boolean("explored", explored, len(chosen))
        fallback_mask = _boolean("fallback", fallback, len(chosen))
        rewards = np.asarray(authorisation, dtype=float)
        if rewards.shape != (len(chosen),):
            raise ValueError(f"authorisation must have one value per decision ({len(chosen)}), got {rewards.shape}")
        labelled = ~np.isnan(rewards)
        if not np.isin(rewards[labelled], (0.0, 1.0)).all():
            raise ValueError("authorisation rewards must be 0, 1 or NaN (not yet arrived)")
        return cls(
            decisions=len(chosen),
            authorisation_labelled=int(labelled.sum()),
            declines=int((rewards[labelled] == 0.0).sum()),
            explored=int(explored_mask.sum()),
            fallbacks=int(fallback_mask.sum()),
            errors=errors,
            action_counts={str(a): int(n) for a, n in chosen.value_counts(sort=False).items()},
        )


@dataclass(frozen=True)
class OperationalLimits:
    """Noise band, minimum sizes, triggers and caps of the operational proxies (see the module docstring).

    A trigger is an absolute tolerance on the noise-discounted statistic; the cap is where ``P_j`` reaches 0.
    Defaults: a 3-point decline-rate change is large for card authorisation (rates of 85-95%) and 10 points
    means the issuers or the traffic changed wholesale; a 5-point exploration change is half of a typical
    epsilon of 0.1; 1% of decisions falling back or failing is an incident; an action-mix TV of 0.10 moves one
    decision in ten to another action, and 0.30 is the KS cap the paper uses for score distributions.
    """

    z: float = 4.0
    min_decisions: int = 100
    decline_trigger: float = 0.03
    decline_cap: float = 0.10
    exploration_trigger: float = 0.05
    exploration_cap: float = 0.20
    fallback_trigger: float = 0.01
    fallback_cap: float = 0.05
    error_trigger: float = 0.01
    error_cap: float = 0.05
    action_mix_trigger: float = 0.10
    action_mix_cap: float = 0.30

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "min_decisions":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"min_decisions must be a positive integer, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError(f"{item.name} must be a positive finite number, got {value!r}")


def operational_proxies(
    reference: OperationalCounts, current: OperationalCounts, limits: OperationalLimits | None = None
) -> list[ProxyReading]:
    """The five operational readings of ``current`` against ``reference`` (see the module docstring)."""
    limits = limits or OperationalLimits()
    return [
        _decline_rate_shift(reference, current, limits),
        _exploration_share_shift(reference, current, limits),
        _fallback_rate(reference, current, limits),
        _error_rate(reference, current, limits),
        _action_mix_shift(reference, current, limits),
    ]


def proportion_shift(k_ref: ArrayLike, n_ref: ArrayLike, k_cur: ArrayLike, n_cur: ArrayLike, z: float) -> np.ndarray:
    """``max(0, |k_cur/n_cur - k_ref/n_ref| - z * SE0)`` elementwise, SE0 the pooled standard error.

    >>> proportion_shift(1000, 10_000, 1500, 10_000, z=4.0).round(4).item()  # 0.05 - 4 * 0.00468
    0.0313
    >>> proportion_shift(100, 1000, 150, 1000, z=4.0).item()  # the same 5 points are within noise at 1,000
    0.0
    >>> proportion_shift([5, 0], [10, 10], [5, 0], [10, 10], z=4.0).tolist()
    [0.0, 0.0]
    """
    k1, n1, k2, n2 = (np.asarray(x, dtype=float) for x in (k_ref, n_ref, k_cur, n_cur))
    if (n1 <= 0).any() or (n2 <= 0).any() or (k1 < 0).any() or (k2 < 0).any() or (k1 > n1).any() or (k2 > n2).any():
        raise ValueError("proportion_shift needs 0 <= k <= n and n > 0 in both windows")
    difference = np.abs(k2 / n2 - k1 / n1)
    return np.maximum(0.0, difference - z * _pooled_se(k1, n1, k2, n2))


def discounted_total_variation(reference: Mapping[str, int], current: Mapping[str, int], z: float) -> float:
    """``1/2 sum_a max(0, |q_a - p_a| - z * SE0_a)`` over the union of the keys (counts in, shares compared).

    >>> discounted_total_variation({"a": 600, "b": 400}, {"a": 400, "c": 600}, z=0.0)
    0.6
    >>> discounted_total_variation({"a": 6, "b": 4}, {"a": 4, "c": 6}, z=4.0)  # ten decisions prove nothing
    0.0
    """
    ref, cur = _aligned_counts(reference, current)
    # Clipped: disjoint supports sum to 1 only up to rounding (1.0000000000000002).
    return min(1.0, float(0.5 * proportion_shift(ref, ref.sum(), cur, cur.sum(), z).sum()))


def wilson_lower(k: int, n: int, z: float) -> float:
    """Lower end of the Wilson score interval for ``k`` successes in ``n`` trials (``z`` standard errors).

    >>> round(wilson_lower(10, 1000, z=4.0), 5), wilson_lower(0, 50, z=4.0)
    (0.00304, 0.0)
    """
    if not 0 <= k <= n or n <= 0:
        raise ValueError(f"wilson_lower needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def too_few(minimum: int, what: str, n_ref: int, n_cur: int) -> str | None:
    """Why two windows cannot be compared (one holds fewer than ``minimum`` of ``what``), or None.

    >>> too_few(100, "decisions", 250, 40)
    'current window: 40 decisions, below the minimum of 100'
    """
    for window, n in (("reference", n_ref), ("current", n_cur)):
        if n < minimum:
            return f"{window} window: {n} {what}, below the minimum of {minimum}"
    return None


def _decline_rate_shift(ref: OperationalCounts, cur: OperationalCounts, limits: OperationalLimits) -> ProxyReading:
    name, covers = "decline_rate_shift", ("reliability", "representativeness")
    cap, trigger = limits.decline_cap, limits.decline_trigger
    short = too_few(
        limits.min_decisions, "authorisation-labelled decisions", ref.authorisation_labelled, cur.authorisation_labelled
    )
    if short:
        return unavailable(name, CATEGORY, short, cap=cap, trigger=trigger, covers=covers)
    statistic, detail = _shift(
        ref.declines, ref.authorisation_labelled, cur.declines, cur.authorisation_labelled, limits.z
    )
    return reading(name, CATEGORY, statistic, cap=cap, trigger=trigger, covers=covers, detail=detail)


def _exploration_share_shift(ref: OperationalCounts, cur: OperationalCounts, limits: OperationalLimits) -> ProxyReading:
    name, covers = "exploration_share_shift", ("representativeness",)
    cap, trigger = limits.exploration_cap, limits.exploration_trigger
    short = too_few(limits.min_decisions, "decisions", ref.decisions, cur.decisions)
    if short:
        return unavailable(name, CATEGORY, short, cap=cap, trigger=trigger, covers=covers)
    statistic, detail = _shift(ref.explored, ref.decisions, cur.explored, cur.decisions, limits.z)
    return reading(name, CATEGORY, statistic, cap=cap, trigger=trigger, covers=covers, detail=detail)


def _fallback_rate(ref: OperationalCounts, cur: OperationalCounts, limits: OperationalLimits) -> ProxyReading:
    name, covers = "fallback_rate", ("reliability", "representativeness")
    cap, trigger = limits.fallback_cap, limits.fallback_trigger
    if cur.decisions < limits.min_decisions:
        reason = f"current window: {cur.decisions} decisions, below the minimum of {limits.min_decisions}"
        return unavailable(name, CATEGORY, reason, cap=cap, trigger=trigger, covers=covers)
    statistic, detail = _rate(cur.fallbacks, cur.decisions, ref.fallbacks, ref.decisions, limits.z)
    return reading(name, CATEGORY, statistic, cap=cap, trigger=trigger, covers=covers, detail=detail)


def _error_rate(ref: OperationalCounts, cur: OperationalCounts, limits: OperationalLimits) -> ProxyReading:
    name, covers = "error_rate", ("completeness",)
    cap, trigger = limits.error_cap, limits.error_trigger
    if cur.errors is None:
        reason = "the number of failed requests in the current window is unknown"
        return unavailable(name, CATEGORY, reason, cap=cap, trigger=trigger, covers=covers)
    requests = cur.decisions + cur.errors
    if requests < limits.min_decisions:
        reason = f"current window: {requests} requests, below the minimum of {limits.min_decisions}"
        return unavailable(name, CATEGORY, reason, cap=cap, trigger=trigger, covers=covers)
    ref_requests = None if ref.errors is None else ref.decisions + ref.errors
    statistic, detail = _rate(cur.errors, requests, ref.errors, ref_requests, limits.z)
    return reading(name, CATEGORY, statistic, cap=cap, trigger=trigger, covers=covers, detail=detail)


def _action_mix_shift(ref: OperationalCounts, cur: OperationalCounts, limits: OperationalLimits) -> ProxyReading:
    name, covers = "action_mix_shift", ("representativeness",)
    cap, trigger = limits.action_mix_cap, limits.action_mix_trigger
    if not ref.action_counts or not cur.action_counts:
        reason = f"action counts are missing for the {'current' if ref.action_counts else 'reference'} window"
        return unavailable(name, CATEGORY, reason, cap=cap, trigger=trigger, covers=covers)
    short = too_few(limits.min_decisions, "decisions", ref.decisions, cur.decisions)
    if short:
        return unavailable(name, CATEGORY, short, cap=cap, trigger=trigger, covers=covers)
    actions = sorted(set(ref.action_counts) | set(cur.action_counts))
    ref_shares = {a: ref.action_counts.get(a, 0) / ref.decisions for a in actions}
    cur_shares = {a: cur.action_counts.get(a, 0) / cur.decisions for a in actions}
    detail = {
        "total_variation": 0.5 * sum(abs(cur_shares[a] - ref_shares[a]) for a in actions),
        "reference_shares": ref_shares,
        "current_shares": cur_shares,
        "reference_decisions": ref.decisions,
        "current_decisions": cur.decisions,
        "z": limits.z,
    }
    statistic = discounted_total_variation(ref.action_counts, cur.action_counts, limits.z)
    return reading(name, CATEGORY, statistic, cap=cap, trigger=trigger, covers=covers, detail=detail)


def _shift(k_ref: int, n_ref: int, k_cur: int, n_cur: int, z: float) -> tuple[float, dict[str, Any]]:
    """A two-proportion shift beyond the noise band, and its detail (raw rates, z score)."""
    se = float(_pooled_se(k_ref, n_ref, k_cur, n_cur))
    difference = k_cur / n_cur - k_ref / n_ref
    detail = {
        "reference_rate": k_ref / n_ref,
        "current_rate": k_cur / n_cur,
        "difference": difference,
        "standard_error": se,
        "z_score": difference / se if se > 0 else None,
        "z": z,
        "reference": {"count": k_ref, "of": n_ref},
        "current": {"count": k_cur, "of": n_cur},
    }
    return float(proportion_shift(k_ref, n_ref, k_cur, n_cur, z)), detail


def _rate(k: int, n: int, k_ref: int | None, n_ref: int | None, z: float) -> tuple[float, dict[str, Any]]:
    """A current-window rate as its Wilson lower bound, and its detail (with the reference rate for context)."""
    detail = {
        "current_rate": k / n,
        "current": {"count": k, "of": n},
        "reference_rate": k_ref / n_ref if k_ref is not None and n_ref else None,
        "z": z,
    }
    return wilson_lower(k, n, z), detail


def _pooled_se(k1: ArrayLike, n1: ArrayLike, k2: ArrayLike, n2: ArrayLike) -> np.ndarray:
    k1, n1, k2, n2 = (np.asarray(x, dtype=float) for x in (k1, n1, k2, n2))
    pooled = (k1 + k2) / (n1 + n2)
    return np.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))


def _aligned_counts(reference: Mapping[str, int], current: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(set(reference) | set(current))
    ref = np.array([reference.get(k, 0) for k in keys], dtype=float)
    cur = np.array([current.get(k, 0) for k in keys], dtype=float)
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("both count vectors need a positive total to compare shares")
    return ref, cur


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer count, got {value!r}")
    return int(value)


def _boolean(name: str, values: ArrayLike, n: int) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (n,) or array.dtype != bool:
        raise ValueError(f"{name} must be a boolean array with one value per decision ({n}), got {array.dtype}")
    return array
