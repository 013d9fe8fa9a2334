"""The gate on real simulated ledgers: what it reads, what it computes, and its edge cases."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.models import Decision, Reward
from banditgate.ledger.promotion import UnknownGeneration
from banditgate.ledger.records import DecisionRecord
from banditgate.monitoring.gate import CONCEPT_DRIFT_LIMIT, GateOptions, GateResult, evaluate_gate
from banditgate.monitoring.proxies.base import CATEGORIES
from banditgate.monitoring.sufficiency import Dimensions, composite, preset
from banditgate.pipelines.retrain import RetrainOptions, retrain
from banditgate.simulator import PaymentWorld
from tests.support.ledger_fill import simulated_ledger

WORLD = PaymentWorld("none", seed=3)
TRAINED_UNTIL = WORLD.epoch + timedelta(days=8)
AS_OF = WORLD.epoch + timedelta(days=12)
# The whole current window is sampled, so every count below is exact.
OPTIONS = GateOptions(sample_size=5_000, scoring_size=400)


class Ledger:
    def __init__(self, directory: Path, *, labels: bool = True, delay: timedelta | None = None) -> None:
        def then(sessions: sessionmaker[Session]) -> None:
            retrain(
                sessions,
                directory / "artifacts",
                "default",
                RetrainOptions(as_of=TRAINED_UNTIL, window=timedelta(days=8)),
            )
            with sessions() as session, session.begin():
                if not labels:
                    session.execute(delete(Reward))
                if delay is not None:
                    # 60% of the authorisation results arrive `delay` late (a slow acquirer's batch files).
                    rows = session.scalars(select(Reward).where(Reward.kind == "authorisation", Reward.id % 10 < 6))
                    for reward in rows:
                        reward.received_at += delay

        env = simulated_ledger(directory, WORLD, days=12, per_day=300, seed=3, then=then)
        self.engine = make_engine(env["BANDITGATE_DATABASE_URL"])
        self.sessions = make_sessionmaker(self.engine)
        self.artifacts = directory / "artifacts"

    def gate(self, number: int = 1, **kwargs: Any) -> GateResult:
        kwargs.setdefault("as_of", AS_OF)
        kwargs.setdefault("options", OPTIONS)
        with self.sessions() as session, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return evaluate_gate(session, self.artifacts, "default", number, **kwargs)

    def count(self, *conditions: Any, labelled: bool = False) -> int:
        query = select(func.count()).select_from(Decision).where(Decision.decided_at <= AS_OF, *conditions)
        if labelled:
            query = query.where(
                Decision.decision_id.in_(
                    select(Reward.decision_id).where(Reward.kind == "authorisation", Reward.received_at <= AS_OF)
                )
            )
        with self.sessions() as session:
            return session.scalar(query) or 0


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    built = Ledger(tmp_path_factory.mktemp("gate"))
    yield built
    built.engine.dispose()


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    built = Ledger(tmp_path_factory.mktemp("gate-unlabelled"), labels=False)
    yield built
    built.engine.dispose()


@pytest.fixture(scope="module")
def delayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    built = Ledger(tmp_path_factory.mktemp("gate-delayed"), delay=timedelta(days=5))
    yield built
    built.engine.dispose()


@pytest.fixture(scope="module")
def candidate(ledger: Ledger) -> GateResult:
    return ledger.gate(what_if="concept")


def test_completeness_counts_the_labels_received_by_as_of(ledger: Ledger, candidate: GateResult) -> None:
    completeness = candidate.report["dimensions"]["completeness"]
    total, labelled = ledger.count(), ledger.count(labelled=True)
    assert candidate.report["windows"]["current"]["decisions"] == total > 3_000
    assert (completeness["n"], completeness["value"]) == (total, labelled / total)


def test_reliability_uses_only_decisions_made_after_the_training_window(ledger: Ledger, candidate: GateResult) -> None:
    assert candidate.report["trained_until"] == TRAINED_UNTIL.isoformat()
    reliability = candidate.report["dimensions"]["reliability"]
    after = ledger.count(Decision.decided_at > TRAINED_UNTIL, labelled=True)
    assert reliability["n"] == after and 0 < after < ledger.count(labelled=True)
    assert reliability["detail"]["method"].startswith("1 - expected calibration error")
    assert 0.8 < reliability["value"] <= 1.0  # a calibrated oracle on the same (no-drift) world


def test_score_and_level_follow_the_composite_of_the_dimensions(candidate: GateResult) -> None:
    report = candidate.report
    values = Dimensions(**{name: m["value"] for name, m in report["dimensions"].items()})
    expected = composite(values, preset("default"))
    assert report["S"] == pytest.approx(expected.score) and report["A"] == pytest.approx(expected.gate_factor)
    assert report["level"] == expected.level.value and report["exit_code"] == expected.level.exit_code
    assert report["level"] == "SUFFICIENT"  # fresh labels, no drift, a model that fits the world
    assert {r["dimension"] for r in report["requirements"]} == set(values.to_dict())


def test_all_seven_proxy_categories_are_reported_with_their_dimensions(candidate: GateResult) -> None:
    proxies = candidate.report["proxies"]
    assert {p["category"] for p in proxies} == set(CATEGORIES)
    available = [p for p in proxies if p["status"] != "unavailable"]
    assert all(0.0 <= p["normalised"] <= 1.0 and p["covers"] for p in available)
    assert {p["name"] for p in proxies if p["status"] == "unavailable"} >= {"greedy_disagreement", "error_rate"}
    assert 0.0 <= candidate.report["S_proxy"] <= 1.0
    assert CONCEPT_DRIFT_LIMIT in candidate.report["limits"]


def test_the_report_is_json_and_reproducible_as_of_its_time(ledger: Ledger, candidate: GateResult) -> None:
    again = ledger.gate(what_if="concept").report
    first = json.loads(json.dumps(candidate.report, allow_nan=False))
    assert {k: v for k, v in again.items() if k != "computed_at"} == {
        k: v for k, v in first.items() if k != "computed_at"
    }


def test_what_if_projects_from_the_measured_dimensions(candidate: GateResult) -> None:
    days = candidate.report["what_if"]["days"]
    assert days[0]["S"] == pytest.approx(candidate.report["S"])
    assert days[-1]["S"] < days[0]["S"] and days[-1]["reliability"] < days[0]["reliability"]


def test_segments_below_their_minimum_size_are_reported_not_counted(ledger: Ledger) -> None:
    options = GateOptions(parameters=preset("default", min_segment_size=100_000), sample_size=5_000, scoring_size=200)
    segments = ledger.gate(options=options).report["segments"]
    assert segments and not any(s["counted"] for s in segments)
    assert all("below minimum size" in s["reason"] and "S" not in s for s in segments)
    assert sum(s["decisions"] for s in segments) == ledger.count()


def test_no_decisions_in_the_window_is_insufficient_not_an_error(ledger: Ledger) -> None:
    report = ledger.gate(as_of=WORLD.epoch - timedelta(days=40)).report
    completeness = report["dimensions"]["completeness"]
    assert (completeness["value"], completeness["n"]) == (0.0, 0)
    assert "no decisions" in completeness["detail"]["reason"]
    assert report["level"] == "INSUFFICIENT" and report["exit_code"] == 2


def test_no_labels_at_all(unlabelled: Ledger) -> None:
    report = unlabelled.gate().report
    dims = report["dimensions"]
    assert (dims["completeness"]["value"], dims["completeness"]["n"]) == (0.0, unlabelled.count())
    assert dims["freshness"]["value"] == 0.0 and "label" in dims["freshness"]["detail"]["reason"]
    assert report["level"] == "INSUFFICIENT"
    assert report["label_latency"]["days_until_sufficient"] is None


def test_generation_zero_has_no_oracle_to_be_reliable(ledger: Ledger) -> None:
    report = ledger.gate(number=0).report
    assert report["dimensions"]["reliability"]["value"] == 0.0
    assert report["level"] == "INSUFFICIENT"


def test_an_upward_move_raises_no_alert(ledger: Ledger, candidate: GateResult) -> None:
    worse = {**candidate.report, "S": 0.3, "level": "INSUFFICIENT", "S_proxy": 0.3, "proxies": []}
    assert ledger.gate(history=[worse]).report["alerts"] == [
        {"kind": "proxy", "proxy": p["name"], "message": f"proxy {p['name']} is beyond its trigger"}
        for p in candidate.report["proxies"]
        if p["status"] == "alert"
    ]


def test_stored_rewards_that_are_not_0_or_1_are_skipped_and_counted_not_a_crash(
    ledger: Ledger, candidate: GateResult
) -> None:
    """Rewards an older version stored (0.5, 7.0: any number was accepted) once crashed every evaluation."""
    with ledger.sessions() as session, session.begin():
        received = (Reward.kind == "authorisation", Reward.received_at <= AS_OF, Reward.received_at > TRAINED_UNTIL)
        poisoned = dict(session.execute(select(Reward.id, Reward.value).where(*received).limit(30)).all())
        for i, reward_id in enumerate(poisoned):
            session.execute(update(Reward).where(Reward.id == reward_id).values(value=0.5 if i % 2 else 7.0))
    try:
        report = ledger.gate(what_if="concept").report
    finally:
        with ledger.sessions() as session, session.begin():
            for reward_id, value in poisoned.items():
                session.execute(update(Reward).where(Reward.id == reward_id).values(value=value))
    assert len(poisoned) == 30 and report["invalid_rewards_skipped"] == 30
    assert report["windows"]["current"]["invalid_rewards_skipped"] == 30
    assert any("30 stored reward values" in limit for limit in report["limits"])
    # The outcomes did arrive: completeness is unchanged; 30 fewer values leave the level where it was.
    assert report["dimensions"]["completeness"] == candidate.report["dimensions"]["completeness"]
    assert report["dimensions"]["reliability"]["n"] <= candidate.report["dimensions"]["reliability"]["n"]
    assert report["level"] == candidate.report["level"] and report["exit_code"] == candidate.report["exit_code"]


def test_too_little_evidence_is_insufficient_with_the_reason_and_an_alert(ledger: Ledger) -> None:
    # A ten-minute window just after the training window: two decisions, both labelled.
    as_of, options = TRAINED_UNTIL + timedelta(minutes=10), GateOptions(window_days=10 / 1440, sample_size=5_000)
    report = ledger.gate(as_of=as_of, options=options).report
    size = report["evidence_size"]
    assert (size["decisions"], size["judged"], size["enough"]) == (2, 2, False)
    assert size["level_by_score"] == "DEGRADED"  # what S alone says, from two labels
    assert report["level"] == "INSUFFICIENT" and report["exit_code"] == 2
    assert size["reasons"] == [
        "2 decisions in the window, the gate needs at least 200",
        "reliability rests on 2 labelled decisions made after the generation's training window, the gate needs "
        "at least 100",
    ]
    assert [a["kind"] for a in report["alerts"]] == ["evidence_size"]
    assert "too little evidence to judge" in report["summary"]
    assert report["label_latency"]["days_until_sufficient"] is None
    # Two observations leave every dimension far from known.
    assert all(m["interval"][1] - m["interval"][0] > 0.3 for m in report["dimensions"].values())
    # The minimum is a declared gate parameter: lowered, the score decides again.
    lenient = GateOptions(
        parameters=preset("default", min_decisions=1, min_labelled=1), window_days=10 / 1440, sample_size=5_000
    )
    judged = ledger.gate(as_of=as_of, options=lenient).report
    assert judged["level"] == "DEGRADED" and judged["evidence_size"]["enough"]
    assert not [a for a in judged["alerts"] if a["kind"] == "evidence_size"]
    # The next evaluation reads a history whose level is not the one its S gives, without failing.
    after = ledger.gate(history=[report]).report
    assert after["level"] == "SUFFICIENT" and not [a for a in after["alerts"] if a["kind"] == "level"]


def test_level_alerts_use_the_policys_thresholds(ledger: Ledger, candidate: GateResult) -> None:
    # Stricter thresholds than the alerts' defaults: S between them is DEGRADED, not a mismatch.
    strict = preset("default", sufficient=min(0.99, candidate.report["S"] + 0.05))
    options = GateOptions(parameters=strict, sample_size=5_000, scoring_size=400)
    report = ledger.gate(options=options, history=[candidate.report]).report
    assert report["level"] == "DEGRADED"
    assert {"kind": "level", "message": "evidence sufficiency fell from SUFFICIENT to DEGRADED"} in report["alerts"]


def test_unknown_generation(ledger: Ledger) -> None:
    with pytest.raises(UnknownGeneration, match="no generation 9"):
        ledger.gate(number=9)


def test_when_labels_are_late_the_gate_says_when_it_will_be_sufficient_and_it_is(delayed: Ledger) -> None:
    # Completeness must reach 0.9 for the gate factor to stop scaling S down.
    options = GateOptions(parameters=preset("default", tau_c=0.9), sample_size=5_000, scoring_size=400)
    now = delayed.gate(options=options).report
    assert now["level"] != "SUFFICIENT" and now["dimensions"]["completeness"]["value"] < 0.9
    latency = now["label_latency"]
    days = latency["days_until_sufficient"]
    assert days is not None and 0 < days <= 5, latency["explanation"]
    assert latency["target_completeness"] > now["dimensions"]["completeness"]["value"]
    later = delayed.gate(options=options, as_of=AS_OF + timedelta(days=days + 0.5)).report
    assert later["dimensions"]["completeness"]["value"] >= latency["target_completeness"] - 0.02
    assert later["level"] == "SUFFICIENT"


def _without_time(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "computed_at"}


def test_decisions_logged_without_segment_values_are_segmented_by_their_context(
    ledger: Ledger, candidate: GateResult
) -> None:
    """Decisions logged before their policy's segment keys were configured: the gate reads the context."""
    with ledger.sessions() as session, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        session.execute(update(Decision).values(segment_values={}))
        result = evaluate_gate(session, ledger.artifacts, "default", 1, as_of=AS_OF, options=OPTIONS, cache=False)
        session.rollback()
    segments = result.report["segments"]
    countries = {s["segment"]["issuer_country"] for s in segments}
    assert len(countries) > 3 and "None" not in countries
    assert segments == candidate.report["segments"]


def test_the_reference_sample_and_its_scores_are_cached_until_the_window_changes(
    ledger: Ledger, candidate: GateResult
) -> None:
    cache = ledger.artifacts / "gate-cache"
    again = ledger.gate(what_if="concept")
    assert _without_time(again.report) == _without_time(candidate.report)
    assert _without_time(ledger.gate(what_if="concept", cache=False).report) == _without_time(candidate.report)
    before = set(cache.glob("*.pickle"))
    assert len(before) >= 2  # the sample, and the generation's scores on it
    # A decision that reaches the ledger late, inside the training window: the window changed, so the
    # reference is sampled and scored again rather than read from a stale entry.
    with ledger.sessions() as session, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        late = session.scalars(select(Decision).where(Decision.decided_at < TRAINED_UNTIL).limit(1)).one()
        session.add(Decision(**{**DecisionRecord.from_row(late).as_row(), "decision_id": "late-arrival"}))
        session.flush()
        changed = evaluate_gate(session, ledger.artifacts, "default", 1, as_of=AS_OF, options=OPTIONS)
        session.rollback()
    assert (
        changed.report["windows"]["reference"]["decisions"] == candidate.report["windows"]["reference"]["decisions"] + 1
    )
    assert len(set(cache.glob("*.pickle")) - before) == 2
