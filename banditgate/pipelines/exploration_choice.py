"""How much a new generation explores: its probability floor and SquareCB gamma, chosen from the evidence.

A fixed gamma ignores how much the oracle knows. The oracle's predicted gaps between actions are often a
point or two of authorisation rate, so ``gamma = 100`` serves nearly uniform distributions however much data
there is, while a large constant gamma on a young oracle exploits its mistakes. Retraining therefore picks
both numbers per generation and records why:

**Floor** (:func:`evidence_floor`). The floor keeps evidence about every action in the logs, so that any other
policy (uniform random included, the most different one) can still be evaluated off-policy. A policy that puts
the floor ``f`` on the actions it does not prefer logs, for uniform random as the target, importance weights of
about ``1 / (K f)`` on a ``K f`` share of its decisions, an effective sample size of about ``n K f`` over ``n``
decisions. The floor is the smallest that keeps ``ess_target`` over the decisions of one training window:
``f = ess_target / (K n)``, at least the policy's own floor and at most :data:`MAX_FLOOR` (and ``1 / K``). It
falls as traffic grows: more decisions carry the same evidence with less exploration.

**Gamma** (:func:`choose_gamma_by_ope`). Each candidate gamma's policy (the new oracle, SquareCB at that
gamma, the floor above) is evaluated on the held-out matured decisions, which the oracle has not seen, by the
doubly robust estimator with the oracle as reward model, as a lift over the deployed generation on the same
rows. The per-row terms of both share the logged rewards, so their difference has a much smaller variance than
either (a paired comparison), and the deployed generation logged most of those rows, so its own terms carry
weights near one. The gamma chosen maximises the lower confidence bound ``lift - z * std_error`` among the
admissible candidates: those whose importance weights keep an effective sample size of at least ``min_ess``,
and whose mean probability off the oracle's best action stays within the exploration budget
``max_exploration``. Greedier policies move further from logs of a more exploratory policy, so their lift is
less certain: with little evidence the bound prefers a moderate gamma, and as matured decisions accumulate it
allows a greedier one. SquareCB's theory asks for the same scaling, ``gamma ~ sqrt(K n / regret of the
oracle)`` (Foster & Rakhlin 2020), whose constants are not known in practice; the off-policy estimate measures
it. The budget bounds what exploration may cost when the estimates are too noisy to tell the candidates apart:
the doubly robust correction of a greedy candidate rests on the few logged rows where an earlier, sharp
generation tried the new oracle's favourite, each with a weight of ``1 / floor``, and one unlucky day of those
would otherwise send the next generation back towards uniform.

References
----------
Foster & Rakhlin, "Beyond UCB: Optimal and Efficient Contextual Bandits with Regression Oracles", ICML 2020
(arXiv:2002.04926); Dudik, Langford & Li, "Doubly robust policy evaluation and learning", ICML 2011
(arXiv:1103.4601); Thomas, Theocharous & Ghavamzadeh, "High confidence policy improvement", ICML 2015 (selecting
by a lower confidence bound); Kish, *Survey Sampling* (1965) for the effective sample size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from banditgate.policies.exploration import SquareCB
from banditgate.policies.ope import DoublyRobust, LoggedBandit, effective_sample_size

#: The candidate gammas of :func:`choose_gamma_by_ope` (about three per decade).
DEFAULT_GAMMAS = (10.0, 30.0, 100.0, 300.0, 1_000.0, 3_000.0, 10_000.0, 30_000.0, 100_000.0)
#: The largest floor :func:`evidence_floor` sets: beyond it exploration costs more than the evidence is worth.
MAX_FLOOR = 0.05


@dataclass(frozen=True)
class GammaCandidate:
    """One candidate gamma, as judged on the held-out decisions.

    Attributes
    ----------
    gamma
        The candidate.
    value
        Doubly robust estimate of the policy's expected reward.
    lift, lift_std_error
        Estimated value minus the reference policy's (the deployed generation) on the same rows (paired), and
        its standard error.
    lower_bound
        ``lift - z * lift_std_error``: what the choice maximises.
    ess
        Effective sample size of the policy's importance weights on the held-out rows.
    off_greedy_mass
        Mean probability the policy gives to actions other than the oracle's best.
    admissible
        Whether ``ess >= min_ess`` and ``off_greedy_mass <= max_exploration``.
    """

    gamma: float
    value: float
    lift: float
    lift_std_error: float
    lower_bound: float
    ess: float
    off_greedy_mass: float
    admissible: bool


@dataclass(frozen=True)
class ExplorationChoice:
    """The floor and gamma a generation serves with, and the evidence behind them (stored with its report).

    Attributes
    ----------
    floor
        The probability floor.
    floor_rule
        How it was set: ``"policy"`` (the policy's configured floor) or ``"evidence"`` (:func:`evidence_floor`).
    gamma
        SquareCB's gamma, or ``None`` when the rule has none (or kept the policy's).
    gamma_rule
        ``"policy"``, ``"ope"``, ``"sqrt"`` or ``"budget"`` (see ``RetrainOptions.gamma_schedule``).
    decisions_in_window, mean_actions, ess_target
        What :func:`evidence_floor` used (``None`` when it was not used).
    rows, z, min_ess, max_exploration
        Held-out rows the candidates were judged on, the bound's multiplier, the ESS floor and the exploration
        budget (``ope`` only).
    candidates
        Every candidate gamma with its estimates (``ope`` only).
    """

    floor: float
    floor_rule: str
    gamma: float | None
    gamma_rule: str
    decisions_in_window: int | None = None
    mean_actions: float | None = None
    ess_target: float | None = None
    rows: int | None = None
    z: float | None = None
    min_ess: float | None = None
    max_exploration: float | None = None
    candidates: list[GammaCandidate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evidence_floor(decisions: int, mean_actions: float, ess_target: float, minimum: float) -> float:
    """The smallest floor that keeps about ``ess_target`` of evidence for uniform random over ``decisions``.

    ``f = ess_target / (K * decisions)`` for ``K = mean_actions`` eligible actions, clipped to
    ``[minimum, min(MAX_FLOOR, 1 / K)]``; see the module's docstring.

    Examples
    --------
    >>> evidence_floor(decisions=28_000, mean_actions=6.0, ess_target=1_000.0, minimum=0.002)
    0.005952380952380952
    >>> evidence_floor(decisions=2_000, mean_actions=6.0, ess_target=1_000.0, minimum=0.002)  # young: capped
    0.05
    >>> evidence_floor(decisions=10_000_000, mean_actions=6.0, ess_target=1_000.0, minimum=0.002)
    0.002
    """
    k = max(mean_actions, 1.0)
    ceiling = min(MAX_FLOOR, 1.0 / k)
    wanted = ess_target / (k * max(decisions, 1))
    return min(max(wanted, minimum), max(ceiling, minimum))


def choose_gamma_by_ope(
    scores: np.ndarray,
    eligible: np.ndarray,
    rewards: np.ndarray,
    chosen: np.ndarray,
    propensities: np.ndarray,
    floor: float,
    reference: np.ndarray | None = None,
    gammas: tuple[float, ...] = DEFAULT_GAMMAS,
    z: float = 1.0,
    min_ess: float = 100.0,
    max_exploration: float = 1.0,
) -> tuple[float, list[GammaCandidate]]:
    """The gamma whose policy's lift over the reference policy has the highest lower confidence bound.

    Parameters
    ----------
    scores, eligible
        The new oracle's scores of every candidate action of the held-out decisions, padded to ``(n, K)``,
        and the mask of real slots. The scores also serve as the doubly robust estimator's reward model.
    rewards, chosen, propensities
        The logged reward, chosen slot and logged propensity of each held-out decision.
    floor
        The floor the new generation will serve with.
    reference
        The reference policy's probabilities of every slot, ``(n, K)``: the deployed generation's (default:
        uniform random over the eligible slots).
    gammas
        The candidates.
    z
        Multiplier of the standard error in the bound (1: one standard error).
    min_ess, max_exploration
        Candidates whose effective sample size is below ``min_ess``, or whose mean off-greedy mass exceeds
        ``max_exploration``, are not admissible; when none is, the admissible-by-ESS candidate with the least
        off-greedy mass is chosen, and failing that the one with the largest ESS.

    Returns
    -------
    The chosen gamma and every candidate's estimates.

    Examples
    --------
    Logs of uniform random over two actions, where the first is better by 0.2 and the oracle knows it: the
    lift is certain and the greediest candidate wins.

    >>> rng = np.random.default_rng(0)
    >>> n = 4000
    >>> chosen = rng.integers(0, 2, n)
    >>> rewards = (rng.random(n) < np.where(chosen == 0, 0.8, 0.6)).astype(float)
    >>> scores = np.tile([0.8, 0.6], (n, 1))
    >>> eligible = np.ones((n, 2), dtype=bool)
    >>> gamma, table = choose_gamma_by_ope(scores, eligible, rewards, chosen, np.full(n, 0.5), floor=0.01)
    >>> gamma, round(table[-1].lift, 2)
    (100000.0, 0.1)
    """
    if not gammas:
        raise ValueError("at least one candidate gamma is needed")
    if reference is None:
        reference = np.where(eligible, 1.0 / eligible.sum(axis=1, keepdims=True), 0.0)
    best = np.where(eligible, scores, -np.inf).argmax(axis=1)
    rows = np.arange(len(scores))

    def data(target: np.ndarray) -> LoggedBandit:
        return LoggedBandit(
            rewards=rewards, actions=chosen, propensities=propensities, target=target, oracle=scores, eligible=eligible
        )

    baseline = DoublyRobust().terms(data(reference)).base
    n = len(rewards)
    candidates = []
    for gamma in gammas:
        target = SquareCB(gamma=gamma, floor=floor).probability_matrix(scores, eligible)
        logged = data(target)
        terms = DoublyRobust().terms(logged).base
        difference = terms - baseline
        lift = float(difference.mean())
        std_error = float(difference.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
        ess = effective_sample_size(logged.importance_weights)
        off_greedy_mass = float(1.0 - target[rows, best].mean())
        candidates.append(
            GammaCandidate(
                gamma=gamma,
                value=float(terms.mean()),
                lift=lift,
                lift_std_error=std_error,
                lower_bound=lift - z * std_error,
                ess=ess,
                off_greedy_mass=off_greedy_mass,
                admissible=ess >= min_ess and off_greedy_mass <= max_exploration,
            )
        )
    admissible = [c for c in candidates if c.admissible]
    if admissible:
        return max(admissible, key=lambda c: c.lower_bound).gamma, candidates
    enough = [c for c in candidates if c.ess >= min_ess]
    if enough:
        return min(enough, key=lambda c: c.off_greedy_mass).gamma, candidates
    return max(candidates, key=lambda c: c.ess).gamma, candidates
