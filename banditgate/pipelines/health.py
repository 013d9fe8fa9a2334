"""Generation health across generations: is each generation doing what its training promised?

The Adyen oscillation effect (DESIGN.md section 1): a generation trained on its predecessor's logs can do
worse than it, because the reward distribution shifts and class imbalance grows as the policy improves, so
realised reward can go up and down from one generation to the next. This report makes that visible, per
generation that served traffic in the window, from the matured decisions it served:

- ``decisions`` served and ``matured`` (reward of ``reward_kind`` received by as-of);
- ``realised_reward``: mean matured reward with a 95% interval (Wilson for 0/1 rewards, normal otherwise);
- ``training_positive_rate`` from the registry (``Generation.row_counts``), when recorded;
- ``calibration`` of the generation's own oracle on its own matured decisions (score of the chosen action):
  Brier score and expected calibration error (10 equal-width bins on [0, 1]); ``None`` without an oracle
  (generation 0 is uniform);
- ``score_shift``: KS statistic between this generation's and the previous generation's oracle scores of the
  chosen actions on the same contexts, the matured rows of the most recent generation that served traffic
  (``None`` when either has no oracle);
- ``ess_by_action``: for each action id, over the generation's matured rows where that action was chosen,
  with w = 1 / logged propensity, ESS = (sum w)^2 / sum w^2. It is at most the number of those rows and
  falls as the propensities of that action become uneven (a sharper policy logging it with very different
  probabilities), i.e. how much off-policy evidence about that action the generation left behind.

Then the ``oscillation`` flag: the realised reward change between consecutive served generations alternates
sign for two or more consecutive changes, each significant (the 95% interval of the difference of means,
normal approximation, excludes 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import ks_2samp
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import registry
from banditgate.ledger.artifacts import load_artifact
from banditgate.ledger.models import Decision, Generation
from banditgate.ledger.types import utcnow
from banditgate.pipelines.training_set import load_training_set
from banditgate.policies.oracles import RewardOracle
from banditgate.policies.oracles.features import ACTION_ID

Z95 = 1.959963984540054
CALIBRATION_BINS = 10


def generation_health(
    sessions: sessionmaker[Session],
    artifact_dir: Path,
    policy: str,
    as_of: datetime | None = None,
    reward_kind: str = "authorisation",
    window: timedelta = timedelta(days=90),
) -> dict[str, Any]:
    """Health of every generation of ``policy`` that served decisions in ``[as_of - window, as_of)``.

    Returns JSON-serialisable data: ``{"policy", "as_of", "window_start", "reward_kind", "generations": [...],
    "oscillation": {...}}`` with one entry per serving generation, in generation order (see the module doc).
    Raises :class:`banditgate.ledger.registry.UnknownPolicy` for an unknown policy.
    """
    as_of = as_of or utcnow()
    start = as_of - window
    with sessions() as session:
        registry.get_policy(session, policy)
        served = dict(
            session.execute(
                select(Decision.generation, func.count())
                .where(Decision.policy == policy, Decision.decided_at >= start, Decision.decided_at < as_of)
                .group_by(Decision.generation)
            ).all()
        )
        generations: dict[int, Generation] = {g.number: g for g in registry.list_generations(session, policy)}
        for g in generations.values():
            session.expunge(g)
        logs = load_training_set(session, policy, as_of, window, reward_kind=reward_kind)

    numbers = sorted(served)
    oracles: dict[int, RewardOracle | None] = {}
    for number in numbers:
        generation = generations.get(number)
        if generation is not None and generation.oracle is not None and generation.artifact_path:
            oracles[number] = load_artifact(generation, artifact_dir)
        else:
            oracles[number] = None

    # The same recent contexts for every score-shift comparison: the latest serving generation's matured rows.
    recent_rows = np.flatnonzero(logs.generations == numbers[-1]) if numbers else np.array([], dtype=np.int64)
    recent_frame = logs.frame.iloc[recent_rows] if len(recent_rows) else None
    recent_scores = {
        number: (oracle.predict_frame(recent_frame) if oracle is not None and recent_frame is not None else None)
        for number, oracle in oracles.items()
    }

    entries: list[dict[str, Any]] = []
    for position, number in enumerate(numbers):
        rows = np.flatnonzero(logs.generations == number)
        rewards = logs.rewards[rows]
        oracle = oracles[number]
        generation = generations.get(number)
        calibration = None
        if oracle is not None and len(rows):
            calibration = calibration_metrics(oracle.predict_frame(logs.frame.iloc[rows]), rewards)
        shift = None
        if position > 0:
            previous = recent_scores[numbers[position - 1]]
            current = recent_scores[number]
            if previous is not None and current is not None and len(current):
                result = ks_2samp(previous, current)
                shift = {
                    "previous_generation": numbers[position - 1],
                    "ks": float(result.statistic),
                    "p_value": float(result.pvalue),
                    "rows": len(current),
                    "rows_from_generation": numbers[-1],
                }
        actions = logs.frame[ACTION_ID].to_numpy()[rows] if len(rows) else np.array([], dtype=object)
        entries.append(
            {
                "generation": number,
                "status": generation.status if generation is not None else None,
                "oracle": generation.oracle if generation is not None else None,
                "decisions": int(served[number]),
                "matured": len(rows),
                "realised_reward": mean_interval(rewards),
                "training_positive_rate": (generation.row_counts or {}).get("training_positive_rate")
                if generation is not None
                else None,
                "calibration": calibration,
                "score_shift": shift,
                "ess_by_action": ess_by_action(actions, logs.propensities[rows]),
            }
        )

    return {
        "policy": policy,
        "as_of": as_of.isoformat(),
        "window_start": start.isoformat(),
        "reward_kind": reward_kind,
        "generations": entries,
        "oscillation": oscillation(
            [e["generation"] for e in entries],
            [e["realised_reward"]["mean"] for e in entries],
            [e["realised_reward"]["standard_error"] for e in entries],
        ),
    }


def mean_interval(values: np.ndarray) -> dict[str, Any]:
    """Mean with its standard error and 95% interval: Wilson for 0/1 values, normal otherwise (None if empty)."""
    n = len(values)
    if n == 0:
        return {"mean": None, "standard_error": None, "ci_low": None, "ci_high": None, "n": 0, "method": None}
    mean = float(values.mean())
    binary = bool(np.isin(values, (0.0, 1.0)).all())
    if binary:
        se = math.sqrt(mean * (1.0 - mean) / n)
        denominator = 1.0 + Z95**2 / n
        centre = (mean + Z95**2 / (2 * n)) / denominator
        half = Z95 * math.sqrt(mean * (1.0 - mean) / n + Z95**2 / (4 * n * n)) / denominator
        low, high, method = centre - half, centre + half, "wilson"
    else:
        se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
        low, high, method = mean - Z95 * se, mean + Z95 * se, "normal"
    return {"mean": mean, "standard_error": se, "ci_low": low, "ci_high": high, "n": n, "method": method}


def calibration_metrics(scores: np.ndarray, rewards: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Brier score and expected calibration error (``bins`` equal-width bins of the score on [0, 1]).

    ECE = sum over bins of (rows in bin / rows) * |mean reward - mean score| in the bin. Scores are clipped
    to [0, 1] first (a regression oracle may step slightly outside).
    """
    scores = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    rewards = np.asarray(rewards, dtype=np.float64)
    which = np.minimum((scores * bins).astype(np.int64), bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(float(rewards[in_bin].mean() - scores[in_bin].mean()))
    return {
        "brier": float(np.mean((scores - rewards) ** 2)),
        "ece": float(ece),
        "mean_score": float(scores.mean()),
        "mean_reward": float(rewards.mean()),
        "bins": bins,
        "rows": len(scores),
    }


def ess_by_action(action_ids: np.ndarray, propensities: np.ndarray) -> dict[str, dict[str, float]]:
    """Per chosen action id: rows and ESS = (sum w)^2 / sum w^2 with w = 1 / propensity over those rows."""
    result: dict[str, dict[str, float]] = {}
    for action in sorted({str(a) for a in action_ids}):
        w = 1.0 / propensities[action_ids == action]
        result[action] = {"rows": len(w), "ess": float(w.sum() ** 2 / np.sum(w * w))}
    return result


def oscillation(
    generations: Sequence[int], means: Sequence[float | None], standard_errors: Sequence[float | None]
) -> dict[str, Any]:
    """Whether realised reward oscillates across consecutive generations.

    Each change between consecutive generations is significant when the 95% interval of the difference of
    means (normal approximation, ``sqrt(se1^2 + se2^2)``) excludes 0. The policy is flagged when two or more
    consecutive changes are significant and alternate in sign (up then down, or down then up).
    ``longest_run`` is the number of changes in the longest such alternating run.
    """
    changes: list[dict[str, Any]] = []
    for i in range(1, len(generations)):
        m0, m1, s0, s1 = means[i - 1], means[i], standard_errors[i - 1], standard_errors[i]
        if m0 is None or m1 is None or s0 is None or s1 is None:
            changes.append({"from": generations[i - 1], "to": generations[i], "change": None, "significant": False})
            continue
        diff = m1 - m0
        half = Z95 * math.sqrt(s0 * s0 + s1 * s1)
        changes.append(
            {
                "from": generations[i - 1],
                "to": generations[i],
                "change": diff,
                "ci_low": diff - half,
                "ci_high": diff + half,
                "significant": bool(diff - half > 0 or diff + half < 0),
            }
        )
    longest = run = 0
    previous_sign = 0
    for change in changes:
        sign = (1 if change["change"] > 0 else -1) if change["significant"] else 0
        if sign == 0:
            run = 0
        elif run and sign == -previous_sign:
            run += 1
        else:
            run = 1
        previous_sign = sign
        longest = max(longest, run)
    return {"flagged": longest >= 2, "longest_run": longest, "changes": changes}


def render_text(report: dict[str, Any]) -> str:
    """A plain-text summary of a health report (the CLI prints a rich table instead)."""
    lines = [f"{report['policy']} generation health as of {report['as_of']} ({report['reward_kind']})"]
    rows = [list(HEALTH_COLUMNS), *health_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEALTH_COLUMNS))]
    lines.extend("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    flag = report["oscillation"]
    lines.append(
        f"oscillation: {'FLAGGED' if flag['flagged'] else 'no'} (longest alternating run {flag['longest_run']})"
    )
    return "\n".join(lines)


HEALTH_COLUMNS = (
    "generation",
    "decisions",
    "matured",
    "reward [95% CI]",
    "train pos. rate",
    "Brier",
    "ECE",
    "KS vs prev.",
    "min ESS (action)",
)


def health_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row of strings per generation, aligned with :data:`HEALTH_COLUMNS`."""

    def number(value: float | None, fmt: str = ".4f") -> str:
        return "-" if value is None else format(value, fmt)

    rows = []
    for entry in report["generations"]:
        reward = entry["realised_reward"]
        interval = (
            "-" if reward["mean"] is None else f"{reward['mean']:.4f} [{reward['ci_low']:.4f}, {reward['ci_high']:.4f}]"
        )
        calibration = entry["calibration"] or {}
        shift = entry["score_shift"] or {}
        ess = entry["ess_by_action"]
        smallest = min(ess.items(), key=lambda item: item[1]["ess"]) if ess else None
        rows.append(
            [
                f"{entry['generation']} ({entry['status'] or '?'})",
                f"{entry['decisions']:,}",
                f"{entry['matured']:,}",
                interval,
                number(entry["training_positive_rate"]),
                number(calibration.get("brier")),
                number(calibration.get("ece")),
                number(shift.get("ks")),
                "-" if smallest is None else f"{smallest[1]['ess']:.1f} ({smallest[0]})",
            ]
        )
    return rows


__all__ = [
    "HEALTH_COLUMNS",
    "calibration_metrics",
    "ess_by_action",
    "generation_health",
    "health_rows",
    "mean_interval",
    "oscillation",
    "render_text",
]
