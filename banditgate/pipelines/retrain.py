"""Retraining: build policy generation n+1 from the matured part of the log, with its OPE report.

The candidate's oracle is fitted by plain supervised learning (ERM) on the matured decisions of the
window, on the earlier part of a time split; the later part is held out for the off-policy evaluation
against the deployed generation and uniform random, so the model is never judged on rows it has seen.
The candidate is registered with its lineage and waits for promotion: retraining never deploys.

An optional trust region bounds how far one generation may move from the deployed one, against the
oscillation effect of the Adyen paper (arXiv 2412.00569, docs/methods.md): see :func:`trust_region_gamma`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import registry
from banditgate.ledger.models import Generation
from banditgate.ledger.reward_kinds import RewardKind
from banditgate.ledger.types import utcnow
from banditgate.pipelines.evaluation import (
    EvaluatedPolicy,
    evaluate_policies,
    evaluated_generation,
    score_candidates,
    standard_policies,
)
from banditgate.pipelines.exploration_choice import (
    DEFAULT_GAMMAS,
    ExplorationChoice,
    choose_gamma_by_ope,
    evidence_floor,
)
from banditgate.pipelines.training_set import TrainingSet, load_training_set
from banditgate.policies.actions import Action
from banditgate.policies.exploration import ExplorationRule, make_rule
from banditgate.policies.oracles import make_oracle, oracle_class
from banditgate.policies.oracles.calibration import Calibration, check_calibration

log = logging.getLogger(__name__)

GammaSchedule = Literal["ope", "fixed", "sqrt", "budget"]
FloorSchedule = Literal["evidence", "policy"]

#: The gamma budget and the trust region are measured on this many most recent matured decisions.
RECENT_CONTEXTS = 1000
#: The trust region's search: gamma = 0 and this many log-spaced values in [1e-4 * gamma, gamma), then bisection.
TRUST_REGION_GRID = 24
TRUST_REGION_BISECTIONS = 20


class NotEnoughData(RuntimeError):
    """Too few matured decisions in the window to train (or to evaluate) a generation."""


@dataclass
class RetrainOptions:
    """How to build the next generation.

    Parameters
    ----------
    window
        Short-term memory: only decisions made in ``[as_of - window, as_of)`` count.
    as_of
        The point in time to retrain as of (default: now). Rewards received after it are ignored.
    reward_kind
        The reward to learn (``authorisation`` by default).
    reward_rule
        The values ``reward_kind`` takes (default: its declared default, else [0, 1]); stored values outside
        it are skipped and counted in the row counts.
    pool_generations
        Train on the logs of every generation in the window (default), or only the deployed one's.
    importance_weighting, weight_clip
        Weight each row by ``min(1 / propensity, clip)`` (normalised to mean 1), correcting the bias that
        non-uniform exploration leaves in the logs.
    prior_correction
        Balance the classes while training (rare outcomes get as much weight as common ones), then correct
        the predicted odds back to the training prior, so scores stay calibrated probabilities.
    calibration
        ``none`` (default) or ``isotonic``: after training, fit an isotonic map from the oracle's score for the
        chosen action to the observed reward on the held-out rows (never the training rows) and serve the
        mapped scores (see :mod:`~banditgate.policies.oracles.calibration`); rewards must lie in [0, 1]. The
        choice of gamma and the OPE report score with the calibrated oracle, on the same held-out rows.
    floor_schedule, ess_target
        The new generation's probability floor: ``evidence`` (default) sets the smallest floor that keeps an
        effective sample size of about ``ess_target`` for evaluating uniform random over the decisions of one
        window, never below the policy's floor (see
        :func:`~banditgate.pipelines.exploration_choice.evidence_floor`); ``policy`` keeps the policy's floor.
    gamma_schedule, gamma_candidates, gamma_z, min_ess, max_exploration, gamma0, exploration_budget
        SquareCB's gamma for the new generation. ``ope`` (default) evaluates each of ``gamma_candidates`` on
        the held-out decisions and takes the one whose lift over the deployed generation has the highest lower
        bound ``lift - gamma_z * std_error`` among those whose effective sample size is at least ``min_ess`` and
        whose mean off-greedy probability is at most ``max_exploration`` (see
        :func:`~banditgate.pipelines.exploration_choice.choose_gamma_by_ope`). ``fixed`` keeps the policy's
        gamma, ``sqrt`` sets ``gamma0 * sqrt(n)`` for ``n`` training rows, ``budget`` picks the gamma whose mean
        off-greedy probability mass on the :data:`RECENT_CONTEXTS` most recent matured decisions is
        ``exploration_budget``.
    trust_region
        Cap on the mean total-variation distance between the new generation's action distribution and the
        deployed generation's on the same recent decisions (``None``: no cap; SquareCB only). The
        new generation's gamma is lowered until ``mean_x TV(p_new(.|x), p_deployed(.|x)) <= trust_region``;
        see :func:`trust_region_gamma`.
    holdout_fraction
        The most recent share of matured rows held out for evaluation.
    max_eval_rows
        Cap on held-out rows scored for the OPE report (the most recent ones).
    min_rows
        Refuse to train on fewer matured rows.
    """

    window: timedelta = timedelta(days=14)
    as_of: datetime | None = None
    reward_kind: str = "authorisation"
    reward_rule: RewardKind | None = None
    pool_generations: bool = True
    importance_weighting: bool = False
    weight_clip: float = 20.0
    prior_correction: bool = False
    calibration: Calibration = "none"
    floor_schedule: FloorSchedule = "evidence"
    ess_target: float = 1_000.0
    gamma_schedule: GammaSchedule = "ope"
    gamma_candidates: tuple[float, ...] = DEFAULT_GAMMAS
    gamma_z: float = 0.0
    min_ess: float = 100.0
    max_exploration: float = 0.2
    gamma0: float = 1.0
    exploration_budget: float = 0.1
    trust_region: float | None = None
    holdout_fraction: float = 0.2
    max_eval_rows: int = 50_000
    min_rows: int = 200
    oracle_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.window <= timedelta(0):
            raise ValueError("window must be positive")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError("holdout_fraction must be in (0, 1)")
        if self.weight_clip < 1.0:
            raise ValueError("weight_clip must be at least 1")
        check_calibration(self.calibration)
        if self.gamma_schedule not in ("ope", "fixed", "sqrt", "budget"):
            raise ValueError(f"unknown gamma schedule {self.gamma_schedule!r}: ope, fixed, sqrt or budget")
        if self.floor_schedule not in ("evidence", "policy"):
            raise ValueError(f"unknown floor schedule {self.floor_schedule!r}: evidence or policy")
        if not (math.isfinite(self.ess_target) and self.ess_target > 0.0):
            raise ValueError("ess_target must be a positive number")
        if not self.gamma_candidates or not all(math.isfinite(g) and g >= 0.0 for g in self.gamma_candidates):
            raise ValueError("gamma_candidates must be non-negative numbers, at least one")
        if not (math.isfinite(self.gamma_z) and self.gamma_z >= 0.0):
            raise ValueError("gamma_z must be a non-negative number")
        if not (math.isfinite(self.min_ess) and self.min_ess >= 0.0):
            raise ValueError("min_ess must be a non-negative number")
        if not 0.0 < self.max_exploration <= 1.0:
            raise ValueError("max_exploration must be in (0, 1]")
        if not 0.0 < self.exploration_budget < 1.0:
            raise ValueError("exploration_budget must be in (0, 1)")
        if self.trust_region is not None and not 0.0 < self.trust_region < 1.0:
            raise ValueError(
                f"trust region must be a total-variation distance in (0, 1), got {self.trust_region!r} "
                "(0 would freeze the policy; 1 or more caps nothing)"
            )


@dataclass
class RetrainResult:
    generation: Generation
    training_rows: int
    held_out_rows: int
    ope_report: dict[str, Any]
    seconds: float


def sample_weights(training: TrainingSet, rows: np.ndarray, options: RetrainOptions) -> np.ndarray | None:
    """Importance and class-balance weights of the training rows, or None when neither is asked for."""
    weights = np.ones(len(rows))
    if options.importance_weighting:
        weights *= np.minimum(1.0 / training.propensities[rows], options.weight_clip)
    if options.prior_correction:
        positive = training.rewards[rows] > 0.5
        prior = positive.mean()
        if 0.0 < prior < 1.0:
            weights *= np.where(positive, 0.5 / prior, 0.5 / (1.0 - prior))
    if not (options.importance_weighting or options.prior_correction):
        return None
    return weights / weights.mean()


def odds_multiplier(training: TrainingSet, rows: np.ndarray, options: RetrainOptions) -> float:
    """Factor that maps odds learned on class-balanced weights back to the training prior.

    Weighting positives by ``w+`` and negatives by ``w-`` multiplies the learned odds by ``w+ / w-``; the
    correction multiplies them by ``w- / w+ = prior / (1 - prior)``.
    """
    if not options.prior_correction:
        return 1.0
    prior = float((training.rewards[rows] > 0.5).mean())
    return prior / (1.0 - prior) if 0.0 < prior < 1.0 else 1.0


def choose_gamma(options: RetrainOptions, n_rows: int, off_greedy_mass: Callable[[float], float]) -> float | None:
    """SquareCB gamma for the new generation, or None to keep the policy's own."""
    if options.gamma_schedule == "fixed":
        return None
    if options.gamma_schedule == "sqrt":
        return options.gamma0 * math.sqrt(n_rows)
    # Off-greedy mass decreases as gamma grows: bisect on a log scale.
    low, high = 1e-3, 1e7
    for _ in range(40):
        middle = math.sqrt(low * high)
        if off_greedy_mass(middle) > options.exploration_budget:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)


def total_variation(p: Sequence[float], q: Sequence[float]) -> float:
    """Total-variation distance between two distributions over the same actions.

    ``TV(p, q) = 1/2 * sum_a |p(a) - q(a)|``: the largest difference in probability the two policies give to
    any set of actions, in [0, 1].

    Examples
    --------
    >>> total_variation([0.5, 0.25, 0.25], [0.25, 0.25, 0.5])
    0.25
    """
    return 0.5 * sum(abs(a - b) for a, b in zip(p, q, strict=True))


def trust_region_gamma(cap: float, gamma: float, distance: Callable[[float], float]) -> dict[str, Any]:
    """The largest SquareCB gamma in ``[0, gamma]`` whose distance to the deployed generation is within ``cap``.

    ``distance(g)`` is the mean total-variation distance, over recent contexts ``x_1..x_n``, between the new
    generation's action distribution at gamma ``g`` and the deployed generation's,
    ``D(g) = 1/n * sum_i TV(p_g(.|x_i), p_deployed(.|x_i))``. ``gamma`` is what the schedule asked for.

    Why gamma, and only downwards. A generation serves with one oracle and one rule; a mixture
    ``(1 - alpha) * p_deployed + alpha * p_new`` would need both generations' oracles at serving time, and
    the probability floor belongs to the policy, not to a generation, so gamma is the one per-generation
    knob the serving path has. Lowering it moves the new generation towards uniform (``gamma = 0`` is
    uniform): when the deployed generation is uniform (generation 0), ``D`` rises monotonically from 0 with
    gamma, so the cap is always met and successive generations can only sharpen by steps of at most ``cap``.
    The trust region is a brake: it never makes a generation greedier than its schedule asked. Against a
    sharp deployed generation whose oracle disagrees with the new one on the best action of some contexts,
    gamma alone may not reach a small cap (spreading mass towards uniform also departs from the deployed
    distribution); the generation is then still registered, with the smallest distance found and ``met``
    false, for the reviewer to weigh at promotion.

    Search. If ``D(gamma) <= cap`` nothing changes. Otherwise ``D`` is evaluated at 0 and on a log grid of
    :data:`TRUST_REGION_GRID` values in ``[1e-4 * gamma, gamma)`` (``D`` need not be monotone when the
    deployed generation is itself sharp: moving towards uniform can also move away from it), and the gamma
    returned is the boundary found by bisection between the largest grid value within the cap and the next
    one. If no value is within the cap, the gamma with the smallest distance found is kept and ``met`` is
    false.

    Returns
    -------
    dict
        ``{"cap", "gamma_before", "tv_before", "gamma", "tv_after", "met"}``: the schedule's gamma and its
        distance, the gamma chosen and its distance, and whether ``tv_after <= cap``.

    Examples
    --------
    With ``D(g) = g / (g + 10)`` (as for a uniform deployed generation, rising from 0), a cap of 0.5 stops at
    ``g = 10``:

    >>> result = trust_region_gamma(0.5, 100.0, lambda g: g / (g + 10.0))
    >>> round(result["gamma"], 3), round(result["tv_before"], 4), result["met"]
    (10.0, 0.9091, True)
    """
    before = distance(gamma)
    result = {"cap": cap, "gamma_before": gamma, "tv_before": before}
    if before <= cap:
        return {**result, "gamma": gamma, "tv_after": before, "met": True}
    points = [0.0, *(gamma * 10.0 ** (4.0 * (i / TRUST_REGION_GRID - 1.0)) for i in range(TRUST_REGION_GRID))]
    distances = [distance(g) for g in points]
    points.append(gamma)
    distances.append(before)
    within = [i for i, d in enumerate(distances) if d <= cap]
    if not within:
        best = int(np.argmin(distances))
        return {**result, "gamma": points[best], "tv_after": distances[best], "met": False}
    low, high, low_distance = points[within[-1]], points[within[-1] + 1], distances[within[-1]]
    for _ in range(TRUST_REGION_BISECTIONS):
        middle = 0.5 * (low + high)
        d = distance(middle)
        if d <= cap:
            low, low_distance = middle, d
        else:
            high = middle
    return {**result, "gamma": low, "tv_after": low_distance, "met": True}


def retrain(
    sessions: sessionmaker[Session],
    artifact_dir: Path,
    policy: str,
    options: RetrainOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> RetrainResult:
    """Train, evaluate and register the next generation of ``policy`` as a candidate."""
    options = options or RetrainOptions()
    started = utcnow()
    as_of = options.as_of or started
    with sessions() as session:
        config = registry.get_policy(session, policy)
        if options.trust_region is not None and config.exploration != "squarecb":
            raise ValueError(
                f"{policy}: the trust region tunes SquareCB's gamma; this policy explores with {config.exploration}"
            )
        if options.calibration != "none" and not hasattr(oracle_class(config.oracle), "calibrate"):
            raise ValueError(f"{options.calibration} calibration is not available for the {config.oracle} oracle")
        deployed = registry.get_generation(session, policy, config.deployed_generation)
        assert deployed is not None
        generations = None if options.pool_generations else [deployed.number]
        training = load_training_set(
            session,
            policy,
            as_of,
            options.window,
            options.reward_kind,
            generations=generations,
            actions_for_last=options.max_eval_rows,
            progress=progress,
            reward_rule=options.reward_rule,
        )
    if len(training) < options.min_rows:
        raise NotEnoughData(
            f"{policy}: {len(training)} matured decisions in the window (of {training.decisions_in_window}); "
            f"need at least {options.min_rows}"
        )
    train_rows, held_out_rows = training.split(options.holdout_fraction)
    if len(np.unique(training.rewards[train_rows])) < 2:
        raise NotEnoughData(f"{policy}: every training reward is {training.rewards[train_rows][0]}: nothing to learn")
    oracle_params = registry.oracle_config({**config.oracle_params, **options.oracle_overrides}, config.features)
    oracle = make_oracle(config.oracle, oracle_params)
    multiplier = odds_multiplier(training, train_rows, options)
    if multiplier != 1.0:
        if not hasattr(oracle, "odds_multiplier"):
            raise ValueError(f"prior correction is not available for the {config.oracle} oracle")
        oracle.odds_multiplier = multiplier
    log.info("%s: fitting %s on %d rows", policy, config.oracle, len(train_rows))
    oracle.fit(
        training.frame.iloc[train_rows].reset_index(drop=True),
        training.rewards[train_rows],
        sample_weight=sample_weights(training, train_rows, options),
    )
    if options.calibration != "none":
        # Fitted on the held-out rows only: on the training rows the model's scores are optimistic.
        oracle.calibrate(training.frame.iloc[held_out_rows].reset_index(drop=True), training.rewards[held_out_rows])
    eval_rows = held_out_rows[-options.max_eval_rows :]
    deployed_policy = evaluated_generation("deployed", config, deployed, artifact_dir)
    rule, exploration_params, choice, trust_region = _exploration(
        config, oracle, deployed_policy, training, eval_rows, options, len(train_rows)
    )
    ope_report = evaluate_policies(training, eval_rows, standard_policies(oracle, rule, deployed_policy), oracle)
    ope_report["as_of"] = as_of.isoformat()
    ope_report["deployed_generation"] = deployed.number
    ope_report["exploration"] = choice.to_dict()
    ope_report["feature_importance"] = oracle.feature_importance().to_dict()
    calibration = getattr(oracle, "calibration_", None)
    ope_report["calibration"] = calibration.describe() if calibration is not None else {"method": "none"}
    artifact = oracle.to_bytes()
    with sessions() as session, session.begin():
        number = (max(g.number for g in registry.list_generations(session, policy)) or 0) + 1
        path, digest = registry.store_artifact(artifact_dir, policy, number, artifact)
        generation = registry.register_generation(
            session,
            policy,
            artifact_path=path,
            artifact_sha256=digest,
            oracle=config.oracle,
            oracle_params=oracle.hyperparameters(),
            exploration=config.exploration,
            exploration_params=exploration_params,
            row_counts={
                **training.row_counts(),
                "training": len(train_rows),
                "held_out": len(held_out_rows),
                "evaluated": len(eval_rows),
                "training_positive_rate": float((training.rewards[train_rows] > 0.5).mean()),
                "options": _describe(options),
                **({"trust_region": trust_region} if trust_region is not None else {}),
            },
            training_window=(training.window_start, as_of),
            parent=deployed.number,
        )
        generation.ope_report = ope_report
    seconds = (utcnow() - started).total_seconds()
    log.info("%s: registered candidate generation %d in %.1f s", policy, generation.number, seconds)
    return RetrainResult(generation, len(train_rows), len(held_out_rows), ope_report, seconds)


def _exploration(
    config: Any,
    oracle: Any,
    deployed: EvaluatedPolicy,
    training: TrainingSet,
    eval_rows: np.ndarray,
    options: RetrainOptions,
    n_rows: int,
) -> tuple[ExplorationRule, dict[str, Any], ExplorationChoice, dict[str, Any] | None]:
    """The new generation's rule, its parameters as registered, how they were chosen, and the trust region's
    result (or None)."""
    params = dict(config.exploration_params)
    sizes = np.array([len(training.actions[i]) for i in eval_rows])
    floor, floor_rule = float(config.floor), "policy"
    if options.floor_schedule == "evidence":
        floor = evidence_floor(training.decisions_in_window, float(sizes.mean()), options.ess_target, config.floor)
        floor_rule = "evidence"
    choice = ExplorationChoice(floor=floor, floor_rule=floor_rule, gamma=params.get("gamma"), gamma_rule="policy")
    trust_region = None
    if config.exploration == "squarecb" and options.gamma_schedule == "ope":
        scores, eligible = score_candidates(oracle, training, eval_rows)
        deployed_scores = (
            score_candidates(deployed.oracle, training, eval_rows)[0]
            if deployed.oracle is not None
            else np.zeros(scores.shape)
        )
        gamma, candidates = choose_gamma_by_ope(
            scores,
            eligible,
            training.rewards[eval_rows],
            training.chosen_index[eval_rows],
            training.propensities[eval_rows],
            floor,
            reference=deployed.rule.probability_matrix(deployed_scores, eligible),
            gammas=options.gamma_candidates,
            z=options.gamma_z,
            min_ess=options.min_ess,
            max_exploration=options.max_exploration,
        )
        params["gamma"] = gamma
        choice = replace(
            choice,
            gamma=gamma,
            gamma_rule="ope",
            decisions_in_window=training.decisions_in_window,
            rows=len(eval_rows),
            z=options.gamma_z,
            min_ess=options.min_ess,
            max_exploration=options.max_exploration,
            candidates=candidates,
        )
    # The budget schedule and the trust region measure on the most recent decisions (those whose candidate sets
    # were loaded); their scores do not depend on gamma, so they are computed once for both.
    sample, sample_scores = [], []
    if config.exploration == "squarecb" and (
        options.gamma_schedule in ("sqrt", "budget") or options.trust_region is not None
    ):
        sample = _recent_sample(training)
        sample_scores = [oracle.predict_decision(context, actions) for context, actions in sample]
    if config.exploration == "squarecb" and options.gamma_schedule in ("sqrt", "budget"):

        def off_greedy_mass(gamma: float) -> float:
            rule = _squarecb(params, gamma, floor)
            return float(np.mean([1.0 - rule.probabilities(s)[int(np.argmax(s))] for s in sample_scores]))

        gamma = choose_gamma(options, n_rows, off_greedy_mass)
        if gamma is not None:
            params["gamma"] = gamma
            choice = replace(choice, gamma=gamma, gamma_rule=options.gamma_schedule)
    if options.floor_schedule == "evidence":
        choice = replace(
            choice,
            decisions_in_window=training.decisions_in_window,
            mean_actions=float(sizes.mean()),
            ess_target=options.ess_target,
        )
    if config.exploration == "squarecb" and options.trust_region is not None:
        deployed_probabilities = [
            deployed.rule.probability_list(
                deployed.oracle.predict_decision(context, actions)
                if deployed.oracle is not None
                else [0.0] * len(actions)
            )
            for context, actions in sample
        ]

        def distance(gamma: float) -> float:
            rule = _squarecb(params, gamma, floor)
            return float(
                np.mean(
                    [
                        total_variation(rule.probability_list(s), q)
                        for s, q in zip(sample_scores, deployed_probabilities, strict=True)
                    ]
                )
            )

        scheduled = float(_squarecb(params, params.get("gamma", 100.0), floor).params()["gamma"])
        trust_region = {
            **trust_region_gamma(options.trust_region, scheduled, distance),
            "contexts": len(sample),
        }
        if not trust_region["met"]:
            log.warning(
                "trust region %.3f not met: smallest mean TV to the deployed generation is %.4f",
                options.trust_region,
                trust_region["tv_after"],
            )
        params["gamma"] = trust_region["gamma"]
        choice = replace(choice, gamma=trust_region["gamma"])
    rule = make_rule(config.exploration, {**params, "floor": floor})
    registered = {k: v for k, v in params.items() if k != "floor"}
    if floor_rule == "evidence":
        registered["floor"] = floor
    return rule, registered, choice, trust_region


def _squarecb(params: dict[str, Any], gamma: float, floor: float) -> ExplorationRule:
    return make_rule("squarecb", {**params, "gamma": gamma, "floor": floor})


def _recent_sample(training: TrainingSet) -> list[tuple[dict[str, Any], list[Action]]]:
    """The :data:`RECENT_CONTEXTS` most recent decisions whose candidate sets were loaded, as served."""
    return [
        (training.context(i), [Action(a["id"], a.get("features") or {}) for a in training.actions[i]])
        for i in sorted(training.actions)[-RECENT_CONTEXTS:]
    ]


def _describe(options: RetrainOptions) -> dict[str, Any]:
    return {
        "window_days": options.window.total_seconds() / 86400,
        "reward_kind": options.reward_kind,
        "pool_generations": options.pool_generations,
        "importance_weighting": options.importance_weighting,
        "weight_clip": options.weight_clip,
        "prior_correction": options.prior_correction,
        "calibration": options.calibration,
        "floor_schedule": options.floor_schedule,
        "ess_target": options.ess_target,
        "gamma_schedule": options.gamma_schedule,
        "gamma_candidates": list(options.gamma_candidates),
        "gamma_z": options.gamma_z,
        "min_ess": options.min_ess,
        "max_exploration": options.max_exploration,
        "gamma0": options.gamma0,
        "exploration_budget": options.exploration_budget,
        "trust_region": options.trust_region,
        "holdout_fraction": options.holdout_fraction,
    }
