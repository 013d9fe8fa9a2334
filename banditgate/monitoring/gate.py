"""The sufficiency gate of one generation: S, its four dimensions, the proxies, and when it will be sufficient.

:func:`evaluate_gate` reads the evidence (:mod:`.evidence`) and computes

- the four dimensions on the current window (:mod:`.dimensions`): completeness and freshness of the judged
  reward kind's labels; reliability of the generation's oracle on the labelled decisions it was *not* trained
  on (made after its training window); representativeness of its scores on that traffic against its scores
  on its own training window;
- S, A and the level (:mod:`.sufficiency`), what would make it sufficient, and the same per segment;
- the label-arrival curve (:mod:`.label_latency`) from both windows, and from it when the labels still
  arriving should bring S to SUFFICIENT (if completeness is all that is missing);
- the seven categories of label-free proxies (:mod:`.proxies`), their dimension estimates and S_proxy, the
  score with each dimension replaced by its proxy estimate where one exists;
- alerts with hysteresis against the earlier evaluations of the same generation (:mod:`.alerts`).

Concept drift (P(Y|X) moves while P(X) does not) leaves every label-free proxy quiet by construction: only
new labels (reliability) can reveal it. The report says so instead of reading quiet proxies as "no drift".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from banditgate.ledger.artifacts import generation_rule, load_artifact
from banditgate.ledger.models import Generation, Policy
from banditgate.ledger.promotion import UnknownGeneration
from banditgate.ledger.registry import get_generation, get_policy
from banditgate.ledger.types import utcnow
from banditgate.monitoring.alerts import AlertPolicy, evaluate_alerts, level_alerts
from banditgate.monitoring.blind_period import project, scenario
from banditgate.monitoring.dimensions import DimensionSet, segment_dimensions, window_dimensions
from banditgate.monitoring.evidence import Evidence, Window, read_evidence, read_reference
from banditgate.monitoring.label_latency import SurvivalCurve, arrival_curve, days_until_completeness
from banditgate.monitoring.options import GateOptions
from banditgate.monitoring.proxies.base import DIMENSIONS, ProxyReading, proxy_dimensions, unavailable
from banditgate.monitoring.proxies.disagreement import disagreement_proxies
from banditgate.monitoring.proxies.feature_drift import FeatureDrift, feature_drift_proxies
from banditgate.monitoring.proxies.ground_truth import EarlySignals, ground_truth_proxies
from banditgate.monitoring.proxies.maturity import maturity_proxies
from banditgate.monitoring.proxies.operational import OperationalCounts, operational_proxies
from banditgate.monitoring.proxies.score_distribution import score_distribution_proxies
from banditgate.monitoring.proxies.uncertainty import uncertainty_proxies
from banditgate.monitoring.reference_cache import ReferenceCache
from banditgate.monitoring.sufficiency import (
    Dimensions,
    Level,
    SufficiencyParameters,
    composite,
    level_between,
    requirements,
)
from banditgate.policies.actions import Action
from banditgate.policies.exploration import ExplorationRule
from banditgate.policies.oracles import RewardOracle
from banditgate.policies.oracles.features import records_to_frame

#: What the report says about concept drift, in every evaluation.
CONCEPT_DRIFT_LIMIT = (
    "Concept drift (P(Y|X) changes while the contexts do not) cannot be detected without labels: the "
    "label-free proxies watch the contexts, the scores and the operations, so they stay quiet under it. Only "
    "reliability measured on new labels can reveal it; until enough labels arrive, quiet proxies mean "
    "'no drift visible without labels', not 'no drift'."
)
#: Decisions per window the drift tests run on: the distances (Wasserstein, Jensen-Shannon) are already
#: stable at this size, and evidently's cost grows with it.
DRIFT_SAMPLE = 10_000
#: Hysteresis of the S_proxy alert: raised below 0.5, cleared above 0.6.
PROXY_ALERT = AlertPolicy(enter=0.5, exit=0.6)


@dataclass(frozen=True)
class GateResult:
    """A gate evaluation: the JSON report, and what the HTML report draws beyond it."""

    report: dict[str, Any]
    feature_drift: FeatureDrift | None = field(default=None, repr=False)
    arrival: SurvivalCurve | None = field(default=None, repr=False)
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def level(self) -> Level:
        return Level(self.report["level"])


@dataclass
class _Scored:
    """The generation's view of a window's sample: scores of the chosen actions, full candidate sets of a part."""

    chosen: np.ndarray  # score of the chosen action, per sampled decision
    probabilities: list[list[float]] = field(default_factory=list)
    greedy: list[int] = field(default_factory=list)


def evaluate_gate(
    session: Session,
    artifact_dir: Path,
    policy: str,
    number: int,
    *,
    as_of: datetime | None = None,
    options: GateOptions | None = None,
    history: Sequence[Mapping[str, Any]] = (),
    what_if: str | None = None,
    cache: bool = True,
    drift_report: bool = True,
) -> GateResult:
    """Evaluate the evidence behind generation ``number`` of ``policy`` as of ``as_of`` (default: now).

    ``history`` are earlier reports of the same generation, oldest first (for alerts with hysteresis);
    ``what_if`` names a blind-period scenario projected forward from the measured dimensions. With ``cache``,
    the reference window's sample and the generation's scores on it are kept in ``<artifact_dir>/gate-cache``
    (:mod:`~banditgate.monitoring.reference_cache`) and reused while the window is unchanged. With
    ``drift_report``, the result keeps evidently's report of the feature-drift tests for the HTML report;
    without it the tests give the same numbers, seconds faster.
    Raises :class:`~banditgate.ledger.registry.UnknownPolicy` or
    :class:`~banditgate.ledger.promotion.UnknownGeneration`.
    """
    options = options or GateOptions()
    params = options.parameters
    as_of = as_of or utcnow()
    computed_at = utcnow()
    policy_row, generation = _policy_and_generation(session, policy, number)
    deployed = get_generation(session, policy, policy_row.deployed_generation)
    reference_cache = ReferenceCache(artifact_dir / "gate-cache") if cache else None
    evidence = read_evidence(session, generation, as_of, options.reading(), reference_cache)
    oracle = load_artifact(generation, artifact_dir) if generation.oracle else None
    rule = generation_rule(policy_row, generation)
    current = _score(oracle, rule, evidence.current, options.scoring_size)
    reference = _cached_score(reference_cache, generation, oracle, rule, evidence.reference, options.scoring_size)
    cutoff = evidence.reference.end if generation.training_window_end is not None else None

    frame = _evidence_frame(evidence.current, options.reward_kind, evidence.segment_keys, current.chosen, cutoff)
    reference_scores = _reference_scores(evidence.reference, reference.chosen) if oracle is not None else None
    dimension_args: dict[str, Any] = {
        "as_of": as_of,
        "lambda_per_day": params.freshness_lambda,
        "ks_cap": params.ks_cap,
        "reliability_metric": params.reliability_metric,
        "reliability_params": {"seed": options.seed},
        "recent": params.recent_labels,
    }
    measured = window_dimensions(frame, reference_scores=reference_scores, **dimension_args)
    values = _values(measured)
    score = composite(values, params)
    size = _evidence_size(frame, as_of, params)
    level = score.level if size.enough else Level.INSUFFICIENT

    arrival_frame = _arrival_frame(evidence, options.reward_kind)
    arrival = arrival_curve(arrival_frame["decided_at"], arrival_frame[f"received:{options.reward_kind}"], as_of)
    needed = requirements(values, params)
    latency = _latency_report(frame, as_of, arrival, needed, level, size)

    by = [*options.segment_keys, "action_id"]
    segment_references = _segment_references(evidence.reference, reference.chosen, by)
    segments = segment_dimensions(
        frame, by=by, min_size=params.min_segment_size, reference_scores=segment_references, **dimension_args
    )
    feature_drift = _feature_drift(evidence, options, drift_report)
    readings = [
        *score_distribution_proxies(
            reference_scores if reference_scores is not None else [], current.chosen[np.isfinite(current.chosen)]
        ),
        *feature_drift.readings,
        *_uncertainty(evidence, current, reference),
        *_disagreement(artifact_dir, policy_row, generation, deployed, evidence.current, current),
        *operational_proxies(*_operational(evidence.current)),
        *maturity_proxies(_cohorts(frame, as_of, arrival)),
        *ground_truth_proxies(
            _early(evidence.reference, options.early_kind, reference.chosen),
            _early(evidence.current, options.early_kind, current.chosen),
        ),
    ]
    estimated = proxy_dimensions(readings)
    # A dimension no available proxy covers keeps its measured value in S_proxy.
    measured_values = values.to_dict()
    proxy_values = Dimensions(**{d: measured_values[d] if estimated[d] is None else estimated[d] for d in DIMENSIONS})
    proxy_score = composite(proxy_values, params)

    skipped = len(evidence.current.invalid_rewards | evidence.reference.invalid_rewards)
    report: dict[str, Any] = {
        "policy": policy,
        "generation": number,
        "deployed_generation": policy_row.deployed_generation,
        "as_of": as_of.isoformat(),
        "computed_at": computed_at.isoformat(),
        "options": options.to_dict(),
        "windows": {"current": evidence.current.to_dict(), "reference": evidence.reference.to_dict()},
        "trained_until": cutoff.isoformat() if cutoff is not None else None,
        "S": score.score,
        "A": score.gate_factor,
        "level": level.value,
        "exit_code": level.exit_code,
        "evidence_size": size.to_dict(score.level),
        "dimensions": {d: getattr(measured, d).to_dict() for d in DIMENSIONS},
        "contributions": score.contributions,
        "requirements": [r.to_dict() for r in needed],
        "label_latency": latency,
        "segments": [_segment_report(s, params) for s in segments],
        "proxies": [r.to_dict() for r in readings],
        "proxy_dimensions": estimated,
        "S_proxy": proxy_score.score,
        "level_proxy": proxy_score.level.value,
        "limits": [CONCEPT_DRIFT_LIMIT],
        "invalid_rewards_skipped": skipped,
    }
    if skipped:
        report["limits"].append(
            f"{skipped} stored reward values of the sampled decisions were neither 0 nor 1 (accepted by an older "
            "version) and were skipped: the labels are the latest valid revisions"
        )
    report["alerts"] = _alerts(history, report, params)
    report["override"] = _override_status(generation, as_of, report)
    if what_if is not None:
        report["what_if"] = _what_if(what_if, values, params)
    report["summary"] = _summary(report)
    return GateResult(_jsonable(report), feature_drift, arrival, [dict(h) for h in history])


def prepare_reference(
    session: Session,
    artifact_dir: Path,
    policy: str,
    number: int,
    *,
    options: GateOptions | None = None,
    as_of: datetime | None = None,
) -> int:
    """Sample and score generation ``number``'s reference window into the gate's cache; returns the sample size.

    Its first evaluation then costs what every later one does. Retraining calls it for a new candidate: its
    training window is in the past, so the entries stay valid unless decisions are still logged into it.
    """
    options = options or GateOptions()
    as_of = as_of or utcnow()
    policy_row, generation = _policy_and_generation(session, policy, number)
    cache = ReferenceCache(artifact_dir / "gate-cache")
    reference = read_reference(session, generation, as_of, options.reading(), cache)
    oracle = load_artifact(generation, artifact_dir) if generation.oracle else None
    _cached_score(cache, generation, oracle, generation_rule(policy_row, generation), reference, options.scoring_size)
    return len(reference.sample)


def _policy_and_generation(session: Session, policy: str, number: int) -> tuple[Policy, Generation]:
    policy_row = get_policy(session, policy)
    generation = get_generation(session, policy, number)
    if generation is None:
        raise UnknownGeneration(policy, number)
    return policy_row, generation


def _score(oracle: RewardOracle | None, rule: ExplorationRule, window: Window, scoring_size: int) -> _Scored:
    sample = window.sample
    if oracle is None or sample.empty:
        return _Scored(np.full(len(sample), np.nan))
    contexts = sample["context"].tolist()
    chosen_actions = [
        next(Action(a["id"], a.get("features") or {}) for a in actions if a["id"] == action_id)
        for actions, action_id in zip(sample["actions"], sample["action_id"], strict=True)
    ]
    scored = _Scored(oracle.predict_frame(records_to_frame(contexts, chosen_actions)))
    count = min(scoring_size, len(sample))
    pair_contexts, pair_actions, sizes = [], [], []
    for context, actions in zip(contexts[:count], sample["actions"][:count], strict=True):
        candidates = [Action(a["id"], a.get("features") or {}) for a in actions]
        pair_contexts.extend([context] * len(candidates))
        pair_actions.extend(candidates)
        sizes.append(len(candidates))
    all_scores = oracle.predict_frame(records_to_frame(pair_contexts, pair_actions)) if pair_actions else []
    offset = 0
    for size in sizes:
        row = np.asarray(all_scores[offset : offset + size], dtype=np.float64)
        offset += size
        scored.probabilities.append(rule.probability_list(row))
        scored.greedy.append(int(np.argmax(row)))
    return scored


def _cached_score(
    cache: ReferenceCache | None,
    generation: Generation,
    oracle: RewardOracle | None,
    rule: ExplorationRule,
    window: Window,
    scoring_size: int,
) -> _Scored:
    """:func:`_score` of the reference window, from the cache when the same model and rule scored the same sample."""
    if cache is None or oracle is None or window.cache_name is None:
        return _score(oracle, rule, window, scoring_size)
    name = ReferenceCache.name(
        entry="reference scores",
        sample=window.cache_name,
        model=generation.artifact_sha256,
        rule=[rule.name, rule.params()],
        scoring_size=scoring_size,
    )
    scored = cache.load(name)
    if scored is None:
        scored = _score(oracle, rule, window, scoring_size)
        cache.store(name, scored)
    return scored


def _evidence_frame(
    window: Window, kind: str, segment_keys: Sequence[str], chosen_scores: np.ndarray, cutoff: datetime | None
) -> pd.DataFrame:
    """The dimensions' evidence frame: every decision of the window, scored (and its label value read) where
    sampled, and not scored where the generation was trained on it."""
    decisions, sample = window.decisions, window.sample
    observed = decisions[f"received:{kind}"]
    label, score = np.full(len(decisions), np.nan), np.full(len(decisions), np.nan)
    label[window.sampled] = sample[f"label:{kind}"].to_numpy(dtype=np.float64)
    score[window.sampled] = chosen_scores
    # An outcome that arrived with no valid value (every revision skipped) counts as arrived, but cannot be judged.
    score[observed.notna().to_numpy() & np.isnan(label)] = np.nan
    frame = pd.DataFrame(
        {
            "decided_at": decisions["decided_at"],
            "labelled": observed.notna().to_numpy(),
            "label": label,
            "label_observed_at": observed,
            "score": score,
            "action_id": decisions["action_id"],
        }
    )
    for key in segment_keys:
        frame[key] = decisions[key]
    if cutoff is not None:
        # The generation has seen these decisions' labels: judging it on them would flatter it.
        frame.loc[frame["decided_at"] <= pd.Timestamp(cutoff), "score"] = np.nan
    return frame


def _reference_scores(window: Window, chosen_scores: np.ndarray) -> np.ndarray:
    """The generation's out-of-sample scores on its training window: those of the held-out decisions, if any."""
    held_out = window.sample["held_out"].to_numpy(dtype=bool)
    scores = chosen_scores[held_out] if held_out.any() else chosen_scores
    return scores[np.isfinite(scores)]


def _segment_references(window: Window, chosen_scores: np.ndarray, by: list[str]) -> dict[tuple[Any, ...], Any]:
    """Each segment's own reference scores: a segment's scores differ from the whole window's by design (an
    action's authorisation rate is its own), so only the same segment's reference says whether it moved."""
    held_out = window.sample["held_out"].to_numpy(dtype=bool)
    rows = held_out if held_out.any() else np.ones(len(window.sample), dtype=bool)
    frame = window.sample.loc[rows, by].assign(score=chosen_scores[rows])
    frame = frame[np.isfinite(frame["score"].to_numpy(dtype=np.float64))]
    return {
        key if isinstance(key, tuple) else (key,): group["score"].to_numpy(dtype=np.float64)
        for key, group in frame.groupby(by, dropna=False, sort=False)
    }


@dataclass(frozen=True)
class EvidenceSize:
    """How much evidence the current window holds against the minimum the gate judges at all.

    ``decisions`` of the window, ``labelled`` of them by ``as_of``, and ``judged``: the labelled ones
    reliability is measured on (scored by the generation, made after its training window).
    """

    decisions: int
    labelled: int
    judged: int
    min_decisions: int
    min_labelled: int

    @property
    def reasons(self) -> list[str]:
        """Why the evidence is too small to judge (empty when it is not)."""
        reasons = []
        if self.decisions < self.min_decisions:
            reasons.append(f"{self.decisions} decisions in the window, the gate needs at least {self.min_decisions}")
        if self.judged < self.min_labelled:
            reasons.append(
                f"reliability rests on {self.judged} labelled decisions made after the generation's training "
                f"window, the gate needs at least {self.min_labelled}"
            )
        return reasons

    @property
    def enough(self) -> bool:
        return not self.reasons

    def to_dict(self, level_by_score: Level) -> dict[str, Any]:
        return {
            "decisions": self.decisions,
            "labelled": self.labelled,
            "judged": self.judged,
            "min_decisions": self.min_decisions,
            "min_labelled": self.min_labelled,
            "enough": self.enough,
            "reasons": self.reasons,
            "level_by_score": level_by_score.value,
        }


def _evidence_size(frame: pd.DataFrame, as_of: datetime, params: SufficiencyParameters) -> EvidenceSize:
    labelled = frame["labelled"].to_numpy(dtype=bool) & (frame["label_observed_at"] <= pd.Timestamp(as_of)).to_numpy()
    judged = labelled & np.isfinite(frame["score"].to_numpy(dtype=np.float64))
    return EvidenceSize(
        decisions=len(frame),
        labelled=int(np.count_nonzero(labelled)),
        judged=int(np.count_nonzero(judged)),
        min_decisions=params.min_decisions,
        min_labelled=params.min_labelled,
    )


def _values(measured: DimensionSet) -> Dimensions:
    return Dimensions(**{d: getattr(measured, d).value for d in DIMENSIONS})


def _arrival_frame(evidence: Evidence, kind: str) -> pd.DataFrame:
    """Decision and first-label times of both windows, each decision once: the reference's decisions that
    fall in the current window are there already (it holds every decision made in it)."""
    current, reference = evidence.current, evidence.reference
    inside = (reference.decisions["decided_at"] > pd.Timestamp(current.start)) & (
        reference.decisions["decided_at"] <= pd.Timestamp(current.end)
    )
    columns = ["decided_at", f"received:{kind}"]
    return pd.concat([reference.decisions.loc[~inside, columns], current.decisions[columns]], ignore_index=True)


def _latency_report(
    frame: pd.DataFrame,
    as_of: datetime,
    curve: SurvivalCurve,
    needed: Sequence[Any],
    level: Level,
    size: EvidenceSize,
) -> dict[str, Any]:
    """The arrival curve, and when the labels still arriving should make the generation SUFFICIENT."""
    ages = (pd.Timestamp(as_of) - frame["decided_at"]).dt.total_seconds().to_numpy() / 86_400.0
    expected = curve.expected_window_completeness(ages) if len(ages) else 0.0
    report: dict[str, Any] = {
        "curve": curve.to_dict(),
        "expected_completeness_now": expected,
        "days_until_sufficient": 0.0 if level is Level.SUFFICIENT else None,
    }
    if level is Level.SUFFICIENT:
        report["explanation"] = "sufficient now"
        return report
    if not size.enough:
        report["explanation"] = "too little evidence to judge: " + "; ".join(size.reasons)
        return report
    # The labels still to arrive raise completeness only; the rest is held where it is. If no completeness
    # reaches the threshold with them, waiting alone will not do it.
    completeness = next(r for r in needed if r.dimension == "completeness")
    if completeness.needed is None:
        report["explanation"] = "labels arriving will not make it sufficient by themselves: " + "; ".join(
            r.message for r in needed if r.dimension != "completeness"
        )
        return report
    days = days_until_completeness(frame, as_of, completeness.needed, curve=curve)
    report["days_until_sufficient"] = days
    report["target_completeness"] = completeness.needed
    report["explanation"] = (
        f"completeness must reach {completeness.needed:.3f}; at the observed arrival rate of labels "
        + (f"that takes {days:.1f} more days" if days is not None else "it never will (the curve levels off below it)")
    )
    return report


def _segment_report(segment: Any, params: SufficiencyParameters) -> dict[str, Any]:
    result = {
        "segment": {k: (None if v is None else str(v)) for k, v in segment.segment.items()},
        "decisions": segment.decisions,
        "counted": segment.counted,
        "reason": segment.reason,
        "dimensions": {d: getattr(segment.dimensions, d).value for d in DIMENSIONS},
    }
    if segment.counted:
        score = composite(_values(segment.dimensions), params)
        result["S"], result["level"] = score.score, score.level.value
    return result


def _context_frame(window: Window, leave_out: Sequence[str]) -> pd.DataFrame:
    if not len(window.sample):
        return pd.DataFrame()
    frame = pd.DataFrame.from_records(window.sample["context"].tolist())
    return frame.drop(columns=[c for c in leave_out if c in frame.columns])


def _feature_drift(evidence: Evidence, options: GateOptions, report: bool = True) -> FeatureDrift:
    reference = _context_frame(evidence.reference, options.calendar_keys)
    current = _context_frame(evidence.current, options.calendar_keys)
    return feature_drift_proxies(reference, current, sample=DRIFT_SAMPLE, seed=options.seed, report=report)


def _uncertainty(evidence: Evidence, current: _Scored, reference: _Scored) -> list[ProxyReading]:
    if current.probabilities and reference.probabilities:
        reference_probs, current_probs = reference.probabilities, current.probabilities
    else:
        # Without an oracle, the logged vectors are what the decisions were made with.
        reference_probs = evidence.reference.sample["probabilities"].tolist()
        current_probs = evidence.current.sample["probabilities"].tolist()
    return uncertainty_proxies(
        reference_probs,
        current_probs,
        _finite(reference.chosen),
        _finite(current.chosen),
    )


def _finite(values: np.ndarray) -> np.ndarray | None:
    """The finite predictions, if they are probabilities (a regression oracle's need not be)."""
    finite = values[np.isfinite(values)]
    return finite if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0 else None


def _disagreement(
    artifact_dir: Path,
    policy: Policy,
    generation: Generation,
    deployed: Generation | None,
    window: Window,
    candidate: _Scored,
) -> list[ProxyReading]:
    if deployed is None or deployed.number == generation.number or not candidate.probabilities:
        return disagreement_proxies(None, None, None, None, candidate_generation=generation.number)
    if not deployed.oracle:
        reason = f"the deployed generation ({deployed.number}) is uniform: it has no greedy action to compare with"
        return [
            unavailable(r.name, r.category, reason, cap=r.cap, trigger=r.trigger, covers=r.covers)
            for r in disagreement_proxies(None, None, None, None)
        ]
    deployed_oracle = load_artifact(deployed, artifact_dir)
    scored = _score(deployed_oracle, generation_rule(policy, deployed), window, len(candidate.probabilities))
    return disagreement_proxies(
        scored.probabilities,
        candidate.probabilities,
        np.asarray(scored.greedy),
        np.asarray(candidate.greedy),
        deployed_generation=deployed.number,
        candidate_generation=generation.number,
    )


def _operational(window: Window) -> tuple[OperationalCounts, OperationalCounts]:
    """Operational counts of the serving generation: the earlier half of the current window, then the recent half.

    Operational signals describe how the serving path behaves, so both sides must come from one generation:
    against its predecessor's traffic, a new generation's own choices (its exploration level, its action mix,
    the declines it avoids) would read as shifts on every check. The generation is the one that served the
    recent half; the halves split the sampled decisions at their median time.
    """
    sample = window.sample
    if sample.empty:
        return _operational_counts(sample), _operational_counts(sample)
    middle = sample["decided_at"].quantile(0.5)
    serving = sample.loc[sample["decided_at"] > middle, "generation"]
    rows = sample[sample["generation"] == (serving.mode().iloc[0] if len(serving) else sample["generation"].iloc[-1])]
    earlier, recent = rows[rows["decided_at"] <= middle], rows[rows["decided_at"] > middle]
    return _operational_counts(earlier), _operational_counts(recent)


def _operational_counts(sample: pd.DataFrame) -> OperationalCounts:
    logged = sample["probabilities"].tolist()
    chosen = [
        next(i for i, a in enumerate(actions) if a["id"] == action_id)
        for actions, action_id in zip(sample["actions"], sample["action_id"], strict=True)
    ]
    explored = np.array([p[i] < max(p) for p, i in zip(logged, chosen, strict=True)], dtype=bool)
    authorisation = sample.get("label:authorisation", pd.Series(np.nan, index=sample.index))
    return OperationalCounts.from_decisions(
        sample["action_id"], explored, sample["fallback"].to_numpy(dtype=bool), authorisation.to_numpy(dtype=float)
    )


def _cohorts(frame: pd.DataFrame, as_of: datetime, curve: SurvivalCurve) -> pd.DataFrame:
    day = frame["decided_at"].dt.floor("D")
    cohorts = frame.assign(day=day).groupby("day").agg(decisions=("labelled", "size"), labelled=("labelled", "sum"))
    ages = (pd.Timestamp(as_of) - (cohorts.index + pd.Timedelta(hours=12))).total_seconds() / 86_400.0
    cohorts["age_days"] = np.maximum(np.asarray(ages, dtype=np.float64), 0.0)
    cohorts["expected_completeness"] = curve.expected_completeness(cohorts["age_days"].to_numpy())
    return cohorts.reset_index(drop=True)


def _early(window: Window, kind: str, chosen_scores: np.ndarray) -> EarlySignals:
    sample = window.sample
    labels = sample[f"label:{kind}"].to_numpy(dtype=np.float64)
    labelled = ~np.isnan(labels)
    predicted = chosen_scores[labelled] if np.isfinite(chosen_scores).all() and chosen_scores.size else None
    retries = None
    if len(sample):
        values = pd.to_numeric(pd.Series([c.get("retry_count") for c in sample["context"]]), errors="coerce")
        if values.notna().all():
            retries = values.to_numpy(dtype=np.float64)
    return EarlySignals(labels[labelled], predicted, retries)


def _alerts(
    history: Sequence[Mapping[str, Any]], report: Mapping[str, Any], params: SufficiencyParameters
) -> list[dict[str, Any]]:
    """Alerts raised now, on a downward move only, with hysteresis over the earlier evaluations; and, on every
    evaluation, when the window holds too little evidence to judge."""
    raised = []
    reasons = report["evidence_size"]["reasons"]
    if reasons:
        raised.append({"kind": "evidence_size", "message": "too little evidence to judge: " + "; ".join(reasons)})
    proxy_states = evaluate_alerts([h.get("S_proxy") for h in history] + [report["S_proxy"]], PROXY_ALERT)
    if proxy_states[-1].raised_now:
        raised.append({"kind": "S_proxy", "message": f"label-free evidence fell to S_proxy {report['S_proxy']:.3f}"})
    evaluations = [*history, report]
    # A level not read from S (too little evidence, or judged under other thresholds) counts by itself.
    scores = [
        e["S"] if level_between(e["S"], params.sufficient, params.degraded).value == e["level"] else None
        for e in evaluations
    ]
    levels = level_alerts(
        [e["level"] for e in evaluations], scores, sufficient=params.sufficient, degraded=params.degraded
    )
    if levels[-1].raised_now:
        raised.append({"kind": "level", "message": levels[-1].message})
    names = {r["name"] for r in report["proxies"] if r["status"] == "alert"}
    before = {r["name"] for r in history[-1]["proxies"] if r["status"] == "alert"} if history else set()
    raised.extend(
        {"kind": "proxy", "proxy": n, "message": f"proxy {n} is beyond its trigger"} for n in sorted(names - before)
    )
    return raised


def _override_status(generation: Generation, as_of: datetime, report: dict[str, Any]) -> dict[str, Any] | None:
    """The override a deployed generation was promoted under, if any, and whether it has expired.

    An override lends a generation time, not evidence: once it expires, a deployed generation whose evidence
    is still not SUFFICIENT raises an alert on every evaluation.
    """
    override = (generation.gate_report or {}).get("override")
    if generation.status != "deployed" or not override:
        return None
    expired = datetime.fromisoformat(override["until"]) <= as_of
    if expired and report["level"] != Level.SUFFICIENT.value:
        report["alerts"].append(
            {
                "kind": "override",
                "message": f"generation {generation.number} was promoted under an override by {override['by']} that "
                f"expired at {override['until']}; its evidence is still {report['level']}",
            }
        )
    return {**override, "expired": expired}


def _what_if(name: str, start: Dimensions, params: SufficiencyParameters, days: int = 90) -> dict[str, Any]:
    projection = project(start, params, scenario(name), days)
    return {"scenario": name, "days": [p.to_dict() for p in projection]}


def _summary(report: Mapping[str, Any]) -> str:
    dims = report["dimensions"]
    text = (
        f"{report['policy']} generation {report['generation']}: S = {report['S']:.3f} ({report['level']}), "
        f"A = {report['A']:.3f}; C {dims['completeness']['value']:.3f}, F {dims['freshness']['value']:.3f}, "
        f"R {dims['reliability']['value']:.3f}, P {dims['representativeness']['value']:.3f}; "
        f"S_proxy {report['S_proxy']:.3f} ({report['level_proxy']})"
    )
    if not report["evidence_size"]["enough"]:
        text += "; too little evidence to judge: " + "; ".join(report["evidence_size"]["reasons"])
    alerts = [p["name"] for p in report["proxies"] if p["status"] == "alert"]
    if alerts:
        text += "; proxies in alert: " + ", ".join(alerts)
    return text


def _jsonable(value: Any) -> Any:
    """Plain JSON: mappings as dicts, sequences as lists, numpy scalars as numbers, NaN and infinities as None
    (PostgreSQL's JSONB refuses them), dates as ISO 8601."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | pd.Timestamp):
        return value.isoformat()
    return value
