"""The sufficiency gate as the promotion gate, on SQLite and PostgreSQL: which stored evaluation a promotion may
rely on. The evaluations are stored reports (their content is the gate's own tests' business): what matters
here is their ``as_of``, ``computed_at``, options and level."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import promotion, registry
from banditgate.ledger.gate_evaluations import store_gate_evaluation
from banditgate.monitoring.gate import GateOptions
from banditgate.monitoring.promotion_gate import Override, SufficiencyGate
from banditgate.monitoring.sufficiency import preset

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CONFIGURED = GateOptions(parameters=preset("fraud"), window_days=30.0, reward_kind="chargeback")


@pytest.fixture
def candidate(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Policy ``routing``: generation 0 deployed, 1 a candidate."""
    with sessions() as session, session.begin():
        registry.put_policy(session, "routing", registry.PolicySpec(), actor="setup")
        registry.register_generation(
            session,
            "routing",
            artifact_path="routing/generation-00001.oracle",
            artifact_sha256="1" * 64,
            oracle="lightgbm",
            oracle_params={},
            exploration="squarecb",
            exploration_params={"gamma": 50.0},
        )
    return sessions


def store(
    sessions: sessionmaker[Session],
    as_of: datetime,
    *,
    computed_at: datetime | None = None,
    options: GateOptions = CONFIGURED,
    level: str = "SUFFICIENT",
) -> int:
    report = {
        "policy": "routing",
        "generation": 1,
        "as_of": as_of.isoformat(),
        "computed_at": (computed_at or as_of).isoformat(),
        "options": options.to_dict(),
        "level": level,
        "S": 0.9 if level == "SUFFICIENT" else 0.3,
        "S_proxy": 0.9,
        "summary": f"routing generation 1: {level}",
    }
    with sessions() as session, session.begin():
        return store_gate_evaluation(session, report).id


def promote(sessions: sessionmaker[Session], gate: SufficiencyGate) -> promotion.Transition:
    with sessions() as session, session.begin():
        return promotion.promote(session, "routing", 1, actor="alice", reason="better", gate=gate)


def refusal(sessions: sessionmaker[Session], gate: SufficiencyGate) -> dict:
    with pytest.raises(promotion.GateRefused) as refused:
        promote(sessions, gate)
    with sessions() as session:
        assert registry.get_generation(session, "routing", 1).status == "candidate"  # type: ignore[union-attr]
    return refused.value.report


GATE = SufficiencyGate(CONFIGURED, max_age=timedelta(hours=24), now=NOW)


def test_a_recent_sufficient_evaluation_with_the_configured_options_allows_the_promotion(
    candidate: sessionmaker[Session],
) -> None:
    evaluation = store(candidate, NOW - timedelta(hours=3))
    transition = promote(candidate, GATE)
    report = transition.deployed.gate_report
    assert report is not None and (report["allowed"], report["evaluation_id"]) == (True, evaluation)
    assert report["level"] == "SUFFICIENT" and "unusable" not in report


def test_an_evaluation_as_of_long_ago_does_not_count_however_recently_it_was_computed(
    candidate: sessionmaker[Session],
) -> None:
    """The issue's case: as of 2026-02-04, computed an hour before a promotion on 2026-12-06."""
    store(candidate, datetime(2026, 2, 4, tzinfo=UTC), computed_at=NOW - timedelta(hours=1))
    report = refusal(candidate, GATE)
    assert report["evaluation_id"] is None and "no usable gate evaluation" in report["message"]
    assert "banditgate gate --policy routing --generation 1" in report["message"]


@pytest.mark.parametrize(
    ("as_of", "computed_at", "reason"),
    [
        (NOW - timedelta(hours=2), NOW - timedelta(hours=1), "not as of then"),  # --as-of an hour back
        (NOW + timedelta(days=10), NOW - timedelta(hours=1), "not as of then"),  # a look into the future
        (NOW + timedelta(hours=1), NOW + timedelta(hours=1), "computed in the future"),
    ],
    ids=["chosen-past", "chosen-future", "clock-ahead"],
)
def test_an_evaluation_not_as_of_its_computation_does_not_count(
    candidate: sessionmaker[Session], as_of: datetime, computed_at: datetime, reason: str
) -> None:
    store(candidate, as_of, computed_at=computed_at)
    report = refusal(candidate, GATE)
    assert report["evaluation_id"] is None and reason in report["unusable"][0]


@pytest.mark.parametrize(
    ("options", "difference"),
    [
        (dataclasses.replace(CONFIGURED, window_days=1.0), "window_days 1.0 (configured: 30.0)"),
        (dataclasses.replace(CONFIGURED, parameters=preset("default")), "parameters.weights.completeness"),
        (dataclasses.replace(CONFIGURED, parameters=preset("fraud", tau_r=0.01)), "parameters.tau_r 0.01"),
        (dataclasses.replace(CONFIGURED, reward_kind="authorisation"), "reward_kind"),
        (dataclasses.replace(CONFIGURED, segment_keys=()), "segment_keys [] (configured"),
        (dataclasses.replace(CONFIGURED, sample_size=100), "sample_size 100"),
    ],
    ids=["window", "preset", "parameter", "reward-kind", "segments", "sample-size"],
)
def test_an_evaluation_with_other_options_than_the_policys_does_not_count(
    candidate: sessionmaker[Session], options: GateOptions, difference: str
) -> None:
    store(candidate, NOW - timedelta(minutes=5), options=options)
    report = refusal(candidate, GATE)
    (unusable,) = report["unusable"]
    assert "other options than the policy's gate" in unusable and difference in unusable


def test_the_latest_usable_evaluation_counts_and_newer_unusable_ones_are_named(
    candidate: sessionmaker[Session],
) -> None:
    usable = store(candidate, NOW - timedelta(hours=6), level="DEGRADED")
    narrow = store(candidate, NOW - timedelta(hours=1), options=dataclasses.replace(CONFIGURED, window_days=2.0))
    report = refusal(candidate, GATE)  # the narrow window was SUFFICIENT; the configured gate says DEGRADED
    assert (report["evaluation_id"], report["level"]) == (usable, "DEGRADED")
    assert report["unusable"] == [
        f"evaluation {narrow} (as of {(NOW - timedelta(hours=1)).isoformat()}) was computed with other options "
        "than the policy's gate: window_days 2.0 (configured: 30.0)"
    ]
    newer = store(candidate, NOW - timedelta(minutes=10))
    assert promote(candidate, GATE).deployed.gate_report["evaluation_id"] == newer  # type: ignore[index]


def test_an_override_still_lends_time_without_a_usable_evaluation(candidate: sessionmaker[Session]) -> None:
    store(candidate, datetime(2026, 2, 4, tzinfo=UTC), computed_at=NOW)
    override = Override("dana", "incident INC-42", NOW + timedelta(days=2))
    gate = SufficiencyGate(CONFIGURED, max_age=timedelta(hours=24), override=override, now=NOW)
    report = promote(candidate, gate).deployed.gate_report
    assert report is not None and report["allowed"] and report["evaluation_id"] is None
    assert report["override"]["by"] == "dana" and "under an override" in report["message"]
