"""Generation health across generations: is each generation doing what its training promised?

The Adyen oscillation effect (arXiv 2412.00569; docs/methods.md): a generation trained on its predecessor's logs can do
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

- ``lift``: the generation's realised reward minus uniform random's value on the same decisions, against a
  baseline common to every generation (see below), with its standard error.

Then the ``oscillation`` flag, judged on the lifts, not on realised rewards: realised reward moves with the
traffic's mix (weekdays, hours, countries) whatever the policy does, so sign flips of raw rewards between
generations fire on any policy. The lift of generation ``g`` over its matured decisions ``i`` (context
``x_i``, candidate set ``A_i`` of size ``K_i``, reward ``r_i``) is

    lift_g = mean_i [ r_i - (1 / K_i) * sum_{a in A_i} q(x_i, a) ],   SE = std_i(...) / sqrt(n_g)

with ``q`` one reward model for every generation, of the policy's oracle kind, fitted on the matured
decisions of the window (pooled over generations, each row weighted by its inverse logged propensity
clipped at :data:`BASELINE_WEIGHT_CLIP`, so rarely logged actions count) and cross-fitted: the decisions are
split into two folds and each fold is scored by the model fitted on the other, so no decision's own reward
enters its baseline. The first term is the generation's own value, measured on-policy (unbiased). The
second is the direct-method estimate of uniform random's value on the same contexts (Dudik, Langford & Li,
"Doubly robust policy evaluation and learning", ICML 2011), a regression adjustment that removes the
traffic's mix (as CUPED does, Deng et al., WSDM 2013). Its error is one fixed function of the context,
common to all generations, so it cancels in the comparisons below up to changes in the mix. The generations'
own oracles would not do: one trained on a single day's logs never saw the weekday effects the baseline has
to remove. The inverse-propensity estimate of uniform's value, ``mean_i r_i / (K_i p_i)``, needs no model but
its variance grows as ``1 / floor``: with a floor of 0.001 its standard error over a day of 1,500 decisions
is about 0.2, larger than any lift. Lifts are computed on the ``lift_rows`` most recent matured decisions
(older generations get ``None``), with at least :data:`BASELINE_MIN_ROWS` of them.

The flag fires when either test rejects at level ``alpha / 2`` (so at most ``alpha`` together, Bonferroni):

- **alternation**: each change of lift between consecutive generations is tested (``z = change / sqrt(se1^2 +
  se2^2)``, two-sided), with Holm's step-down correction over all changes; two or more consecutive
  significant changes of alternating sign flag an oscillation.
- **decline**: over the learned generations (those with an oracle, in order), the ordinary least-squares
  slope of lift on the generation's position, its standard error from the scatter of the lifts around the
  line (so model-to-model variability counts, not only sampling noise), one-sided t test of ``slope < 0``
  (at least :data:`MIN_TREND_GENERATIONS` generations): later generations doing worse than earlier ones,
  the effect of the Adyen paper.

References
----------
Adyen, "Contextual Bandits in Payment Processing: Non-uniform Exploration and Supervised Learning",
arXiv 2412.00569; Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6 (1979).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import ks_2samp, norm
from scipy.stats import t as student_t
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import registry
from banditgate.ledger.artifacts import load_artifact
from banditgate.ledger.models import Decision, Generation
from banditgate.ledger.types import utcnow
from banditgate.pipelines.evaluation import candidate_frame
from banditgate.pipelines.training_set import TrainingSet, load_training_set
from banditgate.policies.oracles import RewardOracle, make_oracle
from banditgate.policies.oracles.features import ACTION_ID

Z95 = 1.959963984540054
CALIBRATION_BINS = 10
#: Family-wise level of the oscillation flag (split evenly between its two tests).
OSCILLATION_ALPHA = 0.05
#: The decline test needs at least this many learned generations with a lift.
MIN_TREND_GENERATIONS = 4
#: Lifts are computed on at most this many most recent matured decisions (every candidate action is scored).
LIFT_ROWS = 50_000
#: The baseline model needs at least this many matured decisions (both folds together).
BASELINE_MIN_ROWS = 200
#: Clip of the inverse-propensity weights of the baseline model's training rows.
BASELINE_WEIGHT_CLIP = 20.0


def generation_health(
    sessions: sessionmaker[Session],
    artifact_dir: Path,
    policy: str,
    as_of: datetime | None = None,
    reward_kind: str = "authorisation",
    window: timedelta = timedelta(days=90),
    lift_rows: int = LIFT_ROWS,
) -> dict[str, Any]:
    """Health of every generation of ``policy`` that served decisions in ``[as_of - window, as_of)``.

    Returns JSON-serialisable data: ``{"policy", "as_of", "window_start", "reward_kind", "lift_model",
    "generations": [...], "oscillation": {...}}`` with one entry per serving generation, in generation order
    (see the module doc); ``oscillation`` is :meth:`OscillationReport.as_dict` and ``lift_model`` describes
    the common baseline model (``None`` when there are too few matured decisions, or a single reward value).
    ``lift_rows`` caps the matured decisions the lifts are computed on (the most recent ones).
    Raises :class:`banditgate.ledger.registry.UnknownPolicy` for an unknown policy.
    """
    if lift_rows < 1:
        raise ValueError(f"lift_rows must be positive, got {lift_rows}")
    as_of = as_of or utcnow()
    start = as_of - window
    with sessions() as session:
        config = registry.get_policy(session, policy)
        oracle_kind, oracle_params = config.oracle, dict(config.oracle_params)
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
        logs = load_training_set(session, policy, as_of, window, reward_kind=reward_kind, actions_for_last=lift_rows)

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

    lift_values, lift_model = per_decision_lift(logs, oracle_kind, oracle_params)

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
                "lift": generation_lift(lift_values, rows),
            }
        )

    return {
        "policy": policy,
        "as_of": as_of.isoformat(),
        "window_start": start.isoformat(),
        "reward_kind": reward_kind,
        "lift_model": lift_model,
        "generations": entries,
        "oscillation": oscillation(
            [e["generation"] for e in entries],
            [e["lift"]["mean"] for e in entries],
            [e["lift"]["standard_error"] for e in entries],
            learned=[oracles[e["generation"]] is not None for e in entries],
        ).as_dict(),
    }


def per_decision_lift(
    logs: TrainingSet, oracle_kind: str, oracle_params: dict[str, Any]
) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """``r_i - mean over i's candidates of q(x_i, a)`` for every matured row whose candidates are loaded (NaN
    for the others), with ``q`` cross-fitted on two folds (see the module doc), and a description of ``q``.

    Returns ``(None, None)`` with fewer than :data:`BASELINE_MIN_ROWS` such rows or a single reward value in
    a fold.
    """
    rows = np.array(sorted(logs.actions), dtype=np.int64)
    if len(rows) < BASELINE_MIN_ROWS:
        return None, None
    fold = np.arange(len(rows)) % 2
    frame, offsets = candidate_frame(logs, rows)
    counts = np.diff(offsets)
    uniform = np.empty(len(rows))
    for f in (0, 1):
        train = rows[fold != f]
        rewards = logs.rewards[train]
        if len(np.unique(rewards)) < 2:
            return None, None
        weights = np.minimum(1.0 / logs.propensities[train], BASELINE_WEIGHT_CLIP)
        model = make_oracle(oracle_kind, oracle_params)
        model.fit(logs.frame.iloc[train].reset_index(drop=True), rewards, sample_weight=weights / weights.mean())
        scored = fold == f
        values = np.add.reduceat(model.predict_frame(frame), offsets[:-1]) / counts
        uniform[scored] = values[scored]
    out = np.full(len(logs), np.nan)
    out[rows] = logs.rewards[rows] - uniform
    description = {"oracle": oracle_kind, "rows": len(rows), "folds": 2, "weight_clip": BASELINE_WEIGHT_CLIP}
    return out, description


def generation_lift(values: np.ndarray | None, rows: np.ndarray) -> dict[str, Any]:
    """Mean and standard error of the per-decision lifts of one generation's rows (None when not measured)."""
    measured = values[rows] if values is not None else np.array([])
    measured = measured[~np.isnan(measured)]
    if len(measured) < 2:
        return {"mean": None, "standard_error": None, "rows": len(measured)}
    return {
        "mean": float(measured.mean()),
        "standard_error": float(measured.std(ddof=1) / math.sqrt(len(measured))),
        "rows": len(measured),
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


@dataclass(frozen=True)
class LiftChange:
    """The change of lift from one generation to the next, with its test (Holm-corrected)."""

    from_generation: int
    to_generation: int
    change: float | None
    standard_error: float | None
    p_value: float | None
    significant: bool


@dataclass(frozen=True)
class LiftTrend:
    """Least-squares slope of lift per learned generation, and the one-sided test of a decline."""

    generations: int
    slope: float
    standard_error: float
    p_value: float
    significant: bool


@dataclass(frozen=True)
class OscillationReport:
    """The oscillation flag and the two tests behind it (see the module doc).

    ``flagged`` is ``alternating or declining``; ``longest_run`` counts the changes of the longest run of
    consecutive significant changes alternating in sign; ``trend`` is ``None`` with too few learned generations.
    """

    flagged: bool
    alternating: bool
    declining: bool
    alpha: float
    longest_run: int
    changes: list[LiftChange]
    trend: LiftTrend | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise level ``alpha``.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03], 0.05)
    [True, False, False]
    >>> holm([0.001, 0.02, 0.04], 0.05)
    [True, True, True]
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


def oscillation(
    generations: Sequence[int],
    lifts: Sequence[float | None],
    standard_errors: Sequence[float | None],
    learned: Sequence[bool] | None = None,
    alpha: float = OSCILLATION_ALPHA,
) -> OscillationReport:
    """Whether the lift of consecutive generations over a common baseline alternates or declines.

    Parameters
    ----------
    generations
        Generation numbers, in order.
    lifts, standard_errors
        Each generation's lift over the common baseline and its standard error (``None``: not measured).
    learned
        Which generations have a learned oracle (default: all); the decline test uses those only, since a
        uniform generation 0 has lift 0 by construction and would make any learning look like a rise.
    alpha
        Family-wise level: ``alpha / 2`` for the Holm-corrected changes, ``alpha / 2`` for the decline.

    Examples
    --------
    >>> report = oscillation([1, 2, 3, 4, 5], [0.04, 0.03, 0.02, 0.01, 0.0], [0.002] * 5)
    >>> report.declining, report.alternating, report.trend.slope < 0
    (True, False, True)
    >>> oscillation([1, 2, 3], [0.02, 0.021, 0.019], [0.005] * 3).flagged
    False
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    learned = [True] * len(generations) if learned is None else list(learned)
    pairs: list[tuple[int, int, float | None, float | None, float | None]] = []
    for i in range(1, len(generations)):
        m0, m1, s0, s1 = lifts[i - 1], lifts[i], standard_errors[i - 1], standard_errors[i]
        if m0 is None or m1 is None or s0 is None or s1 is None:
            pairs.append((generations[i - 1], generations[i], None, None, None))
            continue
        se = math.sqrt(s0 * s0 + s1 * s1)
        diff = m1 - m0
        # A zero standard error (both lifts exact, e.g. two uniform generations): any change is certain.
        p = float(2.0 * norm.sf(abs(diff) / se)) if se > 0.0 else float(diff == 0.0)
        pairs.append((generations[i - 1], generations[i], diff, se, p))
    tested = [i for i, pair in enumerate(pairs) if pair[4] is not None]
    rejected = holm([pairs[i][4] for i in tested], alpha / 2.0)  # type: ignore[misc]
    significant = dict(zip(tested, rejected, strict=True))
    changes = [LiftChange(a, b, diff, se, p, significant.get(i, False)) for i, (a, b, diff, se, p) in enumerate(pairs)]

    longest = run = 0
    previous_sign = 0
    for change in changes:
        sign = (1 if (change.change or 0.0) > 0 else -1) if change.significant else 0
        if sign == 0:
            run = 0
        elif run and sign == -previous_sign:
            run += 1
        else:
            run = 1
        previous_sign = sign
        longest = max(longest, run)

    series = [lift for lift, is_learned in zip(lifts, learned, strict=True) if is_learned and lift is not None]
    trend = None
    if len(series) >= MIN_TREND_GENERATIONS:
        y = np.asarray(series, dtype=np.float64)
        x = np.arange(len(y), dtype=np.float64)
        slope, intercept = np.polyfit(x, y, 1)
        residual = y - (slope * x + intercept)
        se = math.sqrt(float(residual @ residual) / (len(y) - 2) / float(((x - x.mean()) ** 2).sum()))
        # A zero standard error: the lifts lie exactly on the line, so its sign is certain.
        p = float(student_t.cdf(slope / se, len(y) - 2)) if se > 0.0 else float(slope >= 0.0)
        trend = LiftTrend(len(y), float(slope), se, p, p < alpha / 2.0)
    alternating = longest >= 2
    declining = trend is not None and trend.significant
    return OscillationReport(
        flagged=alternating or declining,
        alternating=alternating,
        declining=declining,
        alpha=alpha,
        longest_run=longest,
        changes=changes,
        trend=trend,
    )


def render_text(report: dict[str, Any]) -> str:
    """A plain-text summary of a health report (the CLI prints a rich table instead)."""
    lines = [f"{report['policy']} generation health as of {report['as_of']} ({report['reward_kind']})"]
    rows = [list(HEALTH_COLUMNS), *health_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEALTH_COLUMNS))]
    lines.extend("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    lines.append(oscillation_summary(report["oscillation"]))
    return "\n".join(lines)


def oscillation_summary(flag: dict[str, Any]) -> str:
    """One line on the oscillation flag of a report (``generation_health(...)["oscillation"]``)."""
    trend = flag["trend"]
    slope = (
        f"decline test: fewer than {MIN_TREND_GENERATIONS} learned generations with a lift"
        if trend is None
        else f"lift slope {trend['slope']:+.5f}/generation (one-sided p {trend['p_value']:.3g})"
    )
    reasons = [
        *(["lift alternates"] if flag["alternating"] else []),
        *(["lift declines"] if flag["declining"] else []),
    ]
    return (
        f"oscillation: {'FLAGGED (' + ', '.join(reasons) + ')' if flag['flagged'] else 'no'}; longest run of "
        f"significant lift changes alternating in sign {flag['longest_run']}; {slope}; family-wise level "
        f"{flag['alpha']:g}"
    )


HEALTH_COLUMNS = (
    "generation",
    "decisions",
    "matured",
    "reward [95% CI]",
    "lift (SE)",
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
        lift = entry["lift"]
        smallest = min(ess.items(), key=lambda item: item[1]["ess"]) if ess else None
        rows.append(
            [
                f"{entry['generation']} ({entry['status'] or '?'})",
                f"{entry['decisions']:,}",
                f"{entry['matured']:,}",
                interval,
                "-" if lift["mean"] is None else f"{lift['mean']:+.4f} ({lift['standard_error']:.4f})",
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
    "LiftChange",
    "LiftTrend",
    "OscillationReport",
    "calibration_metrics",
    "ess_by_action",
    "generation_health",
    "generation_lift",
    "health_rows",
    "holm",
    "mean_interval",
    "oscillation",
    "oscillation_summary",
    "per_decision_lift",
    "render_text",
]
