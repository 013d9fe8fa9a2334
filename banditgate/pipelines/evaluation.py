"""Off-policy evaluation of policies (an oracle and an exploration rule) on held-out matured logs.

Every candidate action of every held-out decision is scored: by each policy's own oracle (to get the
probabilities it would have used) and by one reward model (the oracle predictions DM, DR, SNDR and
Switch-DR need). Rows keep their own logged propensity, so logs that mix generations are weighted right.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banditgate.ledger.artifacts import generation_rule, load_artifact
from banditgate.ledger.bulk import paused_gc
from banditgate.ledger.models import Generation, Policy
from banditgate.pipelines.training_set import TrainingSet
from banditgate.policies.actions import Action
from banditgate.policies.exploration import ExplorationRule, Greedy, Uniform
from banditgate.policies.ope import LoggedBandit, evaluate_all
from banditgate.policies.oracles import RewardOracle
from banditgate.policies.oracles.features import decision_row


@dataclass(frozen=True)
class EvaluatedPolicy:
    """A policy to evaluate: its oracle (None for uniform random) and its exploration rule."""

    name: str
    oracle: RewardOracle | None
    rule: ExplorationRule


def evaluated_generation(name: str, policy: Policy, generation: Generation, artifact_dir: Path) -> EvaluatedPolicy:
    """A registered generation as it serves: its artifact (sha256 checked) and its rule."""
    oracle = load_artifact(generation, artifact_dir) if generation.oracle is not None else None
    return EvaluatedPolicy(name, oracle, generation_rule(policy, generation))


def candidate_frame(held_out: TrainingSet, rows: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per (held-out decision, candidate action), and the offset of each decision's first row.

    The last frame built is kept with ``held_out`` and handed out again for the same rows (treat it as read-only).
    """
    key = np.asarray(rows, dtype=np.int64).tobytes()
    cached = held_out.candidate_frame_cache
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    frame, offsets = _candidate_frame(held_out, rows)
    held_out.candidate_frame_cache = (key, frame, offsets)
    return frame, offsets


@paused_gc()
def _candidate_frame(held_out: TrainingSet, rows: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    records = []
    offsets = [0]
    for i, plain in zip(rows, held_out.contexts(rows), strict=True):
        if i not in held_out.actions:
            raise ValueError(f"row {i}: candidate set not loaded; raise actions_for_last when loading")
        for action in held_out.actions[i]:
            records.append(decision_row(plain, Action(action["id"], action.get("features") or {})))
        offsets.append(len(records))
    return pd.DataFrame.from_records(records), np.asarray(offsets)


def score_candidates(oracle: RewardOracle, held_out: TrainingSet, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The oracle's score of every candidate action of the given decisions, padded to ``(n, K)`` (0 off the
    candidates), and the mask of real slots."""
    frame, offsets = candidate_frame(held_out, rows)
    sizes = np.diff(offsets)
    width = int(sizes.max())
    eligible = np.arange(width)[None, :] < sizes[:, None]
    return _padded(oracle.predict_frame(frame), eligible, 0.0), eligible


def _padded(values: np.ndarray, eligible: np.ndarray, fill: float) -> np.ndarray:
    """``values`` (one per candidate, decision after decision) as a (decision, slot) matrix padded with ``fill``.

    ``eligible`` marks the first ``size`` slots of each row, so its row-major order is the order of ``values``.
    """
    out = np.full(eligible.shape, fill)
    out[eligible] = values
    return out


@paused_gc()
def evaluate_policies(
    held_out: TrainingSet,
    rows: np.ndarray,
    policies: list[EvaluatedPolicy],
    reward_model: RewardOracle,
    clip: float = 20.0,
    tau: float = 20.0,
) -> dict[str, Any]:
    """OPE report: every estimator for every policy, plus the logged policy's realised reward.

    Returns a JSON-serialisable dict: ``{"n": ..., "logged_reward": ..., "policies": {name: {estimator:
    {value, ci_low, ci_high, std_error, ess, diagnostics}}}}``.
    """
    frame, offsets = candidate_frame(held_out, rows)
    sizes = np.diff(offsets)
    width = int(sizes.max())
    eligible = np.arange(width)[None, :] < sizes[:, None]
    # The candidate's oracle is usually the reward model too, and scores the frame for two policies (as served
    # and greedy): each oracle scores the frame once.
    scored: list[tuple[RewardOracle, np.ndarray]] = []

    def scores_of(oracle: RewardOracle) -> np.ndarray:
        for known, scores in scored:
            if known is oracle:
                return scores
        scores = _padded(oracle.predict_frame(frame), eligible, 0.0)
        scored.append((oracle, scores))
        return scores

    q = scores_of(reward_model)
    chosen = held_out.chosen_index[rows]
    report: dict[str, Any] = {
        "n": len(rows),
        "logged_reward": float(held_out.rewards[rows].mean()),
        "reward_model": reward_model.kind,
        "clip": clip,
        "tau": tau,
        "policies": {},
    }
    for policy in policies:
        scores = scores_of(policy.oracle) if policy.oracle is not None else np.zeros((len(rows), width))
        target = np.zeros((len(rows), width))
        # Plain floats per decision: the rules compute on them (numpy costs more than the arithmetic at ten actions).
        for i, (row, k) in enumerate(zip(scores.tolist(), sizes.tolist(), strict=True)):
            target[i, :k] = policy.rule.probability_list(row[:k])
        data = LoggedBandit(
            rewards=held_out.rewards[rows],
            actions=chosen,
            propensities=held_out.propensities[rows],
            target=target,
            oracle=q,
            eligible=eligible,
        )
        estimates = evaluate_all(data, clip=clip, tau=tau)
        report["policies"][policy.name] = {
            "exploration": policy.rule.name,
            "exploration_params": policy.rule.params(),
            "estimates": {
                name: {
                    "value": e.value,
                    "ci_low": e.ci_low,
                    "ci_high": e.ci_high,
                    "std_error": e.std_error,
                    "ess": e.ess,
                    "diagnostics": asdict(e.diagnostics),
                }
                for name, e in estimates.items()
            },
        }
    return report


def standard_policies(
    candidate: RewardOracle, rule: ExplorationRule, deployed: EvaluatedPolicy
) -> list[EvaluatedPolicy]:
    """The comparison every retraining report makes: candidate (as served and greedy), deployed, uniform."""
    return [
        EvaluatedPolicy("candidate", candidate, rule),
        EvaluatedPolicy("candidate_greedy", candidate, Greedy()),
        deployed,
        EvaluatedPolicy("uniform", None, Uniform()),
    ]
