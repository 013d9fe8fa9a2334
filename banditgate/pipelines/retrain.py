"""Retraining: build policy generation n+1 from the matured part of the log, with its OPE report.

The candidate's oracle is fitted by plain supervised learning (ERM) on the matured decisions of the
window, on the earlier part of a time split; the later part is held out for the off-policy evaluation
against the deployed generation and uniform random, so the model is never judged on rows it has seen.
The candidate is registered with its lineage and waits for promotion: retraining never deploys.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import registry
from banditgate.ledger.models import Generation
from banditgate.ledger.types import utcnow
from banditgate.pipelines.evaluation import evaluate_policies, evaluated_generation, standard_policies
from banditgate.pipelines.training_set import TrainingSet, load_training_set
from banditgate.policies.actions import Action
from banditgate.policies.exploration import ExplorationRule, make_rule
from banditgate.policies.oracles import make_oracle

log = logging.getLogger(__name__)

GammaSchedule = Literal["fixed", "sqrt", "budget"]


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
    pool_generations
        Train on the logs of every generation in the window (default), or only the deployed one's.
    importance_weighting, weight_clip
        Weight each row by ``min(1 / propensity, clip)`` (normalised to mean 1), correcting the bias that
        non-uniform exploration leaves in the logs.
    prior_correction
        Balance the classes while training (rare outcomes get as much weight as common ones), then correct
        the predicted odds back to the training prior, so scores stay calibrated probabilities.
    gamma_schedule, gamma0, exploration_budget
        SquareCB's gamma for the new generation: ``fixed`` keeps the policy's gamma, ``sqrt`` sets
        ``gamma0 * sqrt(n)`` for ``n`` training rows, ``budget`` picks the gamma whose mean off-greedy
        probability mass on recent contexts is ``exploration_budget``.
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
    pool_generations: bool = True
    importance_weighting: bool = False
    weight_clip: float = 20.0
    prior_correction: bool = False
    gamma_schedule: GammaSchedule = "fixed"
    gamma0: float = 1.0
    exploration_budget: float = 0.1
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
        if self.gamma_schedule not in ("fixed", "sqrt", "budget"):
            raise ValueError(f"unknown gamma schedule {self.gamma_schedule!r}: fixed, sqrt or budget")
        if not 0.0 < self.exploration_budget < 1.0:
            raise ValueError("exploration_budget must be in (0, 1)")


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
        )
    if len(training) < options.min_rows:
        raise NotEnoughData(
            f"{policy}: {len(training)} matured decisions in the window (of {training.decisions_in_window}); "
            f"need at least {options.min_rows}"
        )
    train_rows, held_out_rows = training.split(options.holdout_fraction)
    if len(np.unique(training.rewards[train_rows])) < 2:
        raise NotEnoughData(f"{policy}: every training reward is {training.rewards[train_rows][0]}: nothing to learn")
    oracle_params = {**config.oracle_params, **options.oracle_overrides}
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
    eval_rows = held_out_rows[-options.max_eval_rows :]
    rule, exploration_params = _exploration(config, oracle, training, eval_rows, options, len(train_rows))
    deployed_policy = evaluated_generation("deployed", config, deployed, artifact_dir)
    ope_report = evaluate_policies(training, eval_rows, standard_policies(oracle, rule, deployed_policy), oracle)
    ope_report["as_of"] = as_of.isoformat()
    ope_report["deployed_generation"] = deployed.number
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
            },
            training_window=(training.window_start, as_of),
            parent=deployed.number,
        )
        generation.ope_report = ope_report
    seconds = (utcnow() - started).total_seconds()
    log.info("%s: registered candidate generation %d in %.1f s", policy, generation.number, seconds)
    return RetrainResult(generation, len(train_rows), len(held_out_rows), ope_report, seconds)


def _exploration(
    config: Any, oracle: Any, training: TrainingSet, rows: np.ndarray, options: RetrainOptions, n_rows: int
) -> tuple[ExplorationRule, dict[str, Any]]:
    params = dict(config.exploration_params)
    if config.exploration == "squarecb" and options.gamma_schedule != "fixed":
        # Scores do not depend on gamma: compute them once for a sample of recent decisions.
        sample_scores = []
        for i in rows[-1000:]:
            context = training.context(i)
            actions = [Action(a["id"], a.get("features") or {}) for a in training.actions[i]]
            sample_scores.append(oracle.predict_decision(context, actions))

        def off_greedy_mass(gamma: float) -> float:
            rule = make_rule("squarecb", {**params, "gamma": gamma, "floor": config.floor})
            return float(np.mean([1.0 - rule.probabilities(s)[int(np.argmax(s))] for s in sample_scores]))

        gamma = choose_gamma(options, n_rows, off_greedy_mass)
        if gamma is not None:
            params["gamma"] = gamma
    rule = make_rule(config.exploration, {**params, "floor": config.floor})
    return rule, {k: v for k, v in params.items() if k != "floor"}


def _describe(options: RetrainOptions) -> dict[str, Any]:
    return {
        "window_days": options.window.total_seconds() / 86400,
        "reward_kind": options.reward_kind,
        "pool_generations": options.pool_generations,
        "importance_weighting": options.importance_weighting,
        "weight_clip": options.weight_clip,
        "prior_correction": options.prior_correction,
        "gamma_schedule": options.gamma_schedule,
        "gamma0": options.gamma0,
        "exploration_budget": options.exploration_budget,
        "holdout_fraction": options.holdout_fraction,
    }
