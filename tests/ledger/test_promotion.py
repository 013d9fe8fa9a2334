"""Promotion and rollback in the registry, on SQLite and PostgreSQL: transitions, records, refusals, the gate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import promotion, registry
from banditgate.ledger.models import AuditEvent, Generation, Policy


def make_policy(sessions: sessionmaker[Session], candidates: int) -> None:
    """Policy ``routing``: generation 0 deployed, then ``candidates`` candidates (artifacts are not read here)."""
    with sessions() as session, session.begin():
        registry.put_policy(session, "routing", registry.PolicySpec(), actor="setup")
        for number in range(1, candidates + 1):
            registry.register_generation(
                session,
                "routing",
                artifact_path=f"routing/generation-{number:05d}.oracle",
                artifact_sha256=f"{number:064x}",
                oracle="lightgbm",
                oracle_params={},
                exploration="squarecb",
                exploration_params={"gamma": 50.0 * number},
            )


def run(sessions: sessionmaker[Session], change: Callable[[Session], promotion.Transition]) -> promotion.Transition:
    with sessions() as session, session.begin():
        return change(session)


def state(sessions: sessionmaker[Session]) -> tuple[int, int, list[tuple[int, str]], int]:
    """Deployed generation, revision, (number, status) of every generation, number of audit events."""
    with sessions() as session:
        policy = registry.get_policy(session, "routing")
        statuses = [(g.number, g.status) for g in registry.list_generations(session, "routing")]
        events = session.scalar(select(func.count()).select_from(AuditEvent))
    return policy.deployed_generation, policy.revision, statuses, events or 0


def test_promoting_a_candidate_retires_the_deployed_generation_and_records_who_when_why(
    sessions: sessionmaker[Session],
) -> None:
    make_policy(sessions, candidates=1)
    before = datetime.now(UTC)
    transition = run(sessions, lambda s: promotion.promote(s, "routing", 1, actor="alice", reason="OPE +2.1%"))
    after = datetime.now(UTC)

    assert transition.action == "promote"
    assert (transition.deployed.number, transition.replaced.number) == (1, 0)
    assert state(sessions)[:3] == (1, 2, [(0, "retired"), (1, "deployed")])
    with sessions() as session:
        generation = registry.get_generation(session, "routing", 1)
        (event,) = registry.list_audit_events(session, "routing", limit=1)
    assert generation is not None
    assert (generation.promoted_by, generation.promoted_reason) == ("alice", "OPE +2.1%")
    assert generation.promoted_at is not None and before <= generation.promoted_at <= after
    assert generation.gate_report is not None and generation.gate_report["allowed"] is True
    assert "no sufficiency gate configured yet" in generation.gate_report["message"]
    assert (event.action, event.actor, event.reason, event.at) == (
        "promote",
        "alice",
        "OPE +2.1%",
        generation.promoted_at,
    )
    assert event.details == {"from": 0, "to": 1, "gate": generation.gate_report}


def test_rollback_goes_back_to_the_generation_replaced_and_a_second_one_undoes_it(
    sessions: sessionmaker[Session],
) -> None:
    make_policy(sessions, candidates=2)
    run(sessions, lambda s: promotion.promote(s, "routing", 1, actor="alice", reason="better"))
    run(sessions, lambda s: promotion.promote(s, "routing", 2, actor="alice", reason="better still"))

    back = run(sessions, lambda s: promotion.rollback(s, "routing", actor="bob", reason="auth rate dropped"))
    assert (back.action, back.replaced.number, back.deployed.number) == ("rollback", 2, 1)
    assert state(sessions)[:3] == (1, 4, [(0, "retired"), (1, "deployed"), (2, "retired")])

    undone = run(sessions, lambda s: promotion.rollback(s, "routing", actor="carol", reason="false alarm"))
    assert (undone.replaced.number, undone.deployed.number) == (1, 2)

    cold = run(sessions, lambda s: promotion.rollback(s, "routing", actor="dave", reason="incident", to=0))
    assert (cold.replaced.number, cold.deployed.number) == (2, 0)
    assert state(sessions)[:3] == (0, 6, [(0, "deployed"), (1, "retired"), (2, "retired")])

    with sessions() as session:
        events = list(reversed(registry.list_audit_events(session, "routing")))
        generation = registry.get_generation(session, "routing", 1)
    trail = [
        (e.action, e.actor, e.details.get("from"), e.details.get("to"), e.details.get("gate") is None) for e in events
    ]
    assert trail == [
        ("create", "setup", None, None, True),
        ("promote", "alice", 0, 1, False),
        ("promote", "alice", 1, 2, False),
        ("rollback", "bob", 2, 1, True),
        ("rollback", "carol", 1, 2, True),
        ("rollback", "dave", 2, 0, True),
    ]
    # The rollback is the latest deployment of generation 1; its promotion's gate report is kept.
    assert (
        generation is not None and generation.promoted_by == "bob" and generation.promoted_reason == "auth rate dropped"
    )
    assert generation.gate_report is not None and generation.gate_report["gate"] == "none"


promote, rollback = promotion.promote, promotion.rollback
Conflict, Missing, Unknown = promotion.TransitionConflict, promotion.MissingAttribution, promotion.UnknownGeneration
#: Each refused after the set-up of :func:`test_refusals_change_nothing`: 0 retired, 1 deployed, 2 candidate.
REFUSALS = [
    pytest.param(
        lambda s: promote(s, "nope", 1, "a", "r"), registry.UnknownPolicy, "nope", id="promote-unknown-policy"
    ),
    pytest.param(lambda s: promote(s, "routing", 7, "a", "r"), Unknown, "no generation 7", id="promote-unknown"),
    pytest.param(lambda s: promote(s, "routing", 1, "a", "r"), Conflict, "already deployed", id="promote-deployed"),
    pytest.param(lambda s: promote(s, "routing", 0, "a", "r"), Conflict, "rollback to 0", id="promote-retired"),
    pytest.param(lambda s: promote(s, "routing", 2, "a", "  "), Missing, "reason", id="promote-blank-reason"),
    pytest.param(lambda s: promote(s, "routing", 2, "", "r"), Missing, "actor", id="promote-no-actor"),
    pytest.param(lambda s: rollback(s, "nope", "a", "r"), registry.UnknownPolicy, "nope", id="rollback-unknown-policy"),
    pytest.param(lambda s: rollback(s, "routing", "a", "r", to=9), Unknown, "no generation 9", id="rollback-unknown"),
    pytest.param(
        lambda s: rollback(s, "routing", "a", "r", to=1), Conflict, "already deployed", id="rollback-deployed"
    ),
    pytest.param(
        lambda s: rollback(s, "routing", "a", "r", to=2), Conflict, "promote it instead", id="rollback-candidate"
    ),
    pytest.param(lambda s: rollback(s, "routing", "a", ""), Missing, "reason", id="rollback-no-reason"),
]


@pytest.mark.parametrize(("change", "error", "message"), REFUSALS)
def test_refusals_change_nothing(
    sessions: sessionmaker[Session], change: Callable[[Session], Any], error: type[Exception], message: str
) -> None:
    make_policy(sessions, candidates=2)
    run(sessions, lambda s: promotion.promote(s, "routing", 1, actor="alice", reason="setup"))
    before = state(sessions)
    with pytest.raises(error, match=message):
        run(sessions, change)
    assert state(sessions) == before


def test_nothing_to_roll_back_to_before_any_promotion(sessions: sessionmaker[Session]) -> None:
    make_policy(sessions, candidates=1)
    with pytest.raises(promotion.TransitionConflict, match="nothing to roll back to"):
        run(sessions, lambda s: promotion.rollback(s, "routing", actor="bob", reason="panic"))
    assert state(sessions)[:3] == (0, 1, [(0, "deployed"), (1, "candidate")])


class RecordingGate:
    """A gate that answers ``allowed`` with a report, remembering what it was asked."""

    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed
        self.asked: list[tuple[str, int, str]] = []

    def check(self, session: Session, policy: Policy, generation: Generation) -> promotion.GateVerdict:
        self.asked.append((policy.name, generation.number, generation.status))
        return promotion.GateVerdict(self.allowed, {"gate": "test", "level": "SUFFICIENT" if self.allowed else "LOW"})


def test_a_refusing_gate_blocks_the_promotion_and_says_why(sessions: sessionmaker[Session]) -> None:
    make_policy(sessions, candidates=1)
    gate = RecordingGate(allowed=False)
    before = state(sessions)
    with pytest.raises(promotion.GateRefused, match="refused generation 1") as refused:
        run(sessions, lambda s: promotion.promote(s, "routing", 1, actor="alice", reason="try", gate=gate))
    assert refused.value.report == {"gate": "test", "level": "LOW"}
    assert gate.asked == [("routing", 1, "candidate")]
    assert state(sessions) == before


def test_an_allowing_gate_report_is_kept_on_the_generation_and_in_the_audit_trail(
    sessions: sessionmaker[Session],
) -> None:
    make_policy(sessions, candidates=1)
    gate = RecordingGate(allowed=True)
    run(sessions, lambda s: promotion.promote(s, "routing", 1, actor="alice", reason="sufficient", gate=gate))
    with sessions() as session:
        generation = registry.get_generation(session, "routing", 1)
        (event,) = registry.list_audit_events(session, "routing", limit=1)
    assert generation is not None and generation.gate_report == {"gate": "test", "level": "SUFFICIENT"}
    assert event.details["gate"] == generation.gate_report


def test_rollback_does_not_ask_the_gate(sessions: sessionmaker[Session]) -> None:
    make_policy(sessions, candidates=1)
    run(sessions, lambda s: promotion.promote(s, "routing", 1, actor="alice", reason="go"))
    transition = run(sessions, lambda s: promotion.rollback(s, "routing", actor="bob", reason="back"))
    assert transition.deployed.number == 0 and transition.event.details["gate"] is None


def test_concurrent_promotions_queue_up_instead_of_both_retiring_the_same_generation(
    sessions: sessionmaker[Session],
) -> None:
    """Two processes promoting at once: the second waits for the first, then replaces what the first deployed."""
    make_policy(sessions, candidates=2)
    second: list[promotion.Transition | BaseException] = []

    def promote_two() -> None:
        try:
            second.append(run(sessions, lambda s: promotion.promote(s, "routing", 2, actor="bob", reason="mine")))
        except BaseException as exc:
            second.append(exc)

    with sessions() as session, session.begin():
        promotion.promote(session, "routing", 1, actor="alice", reason="mine")
        other = threading.Thread(target=promote_two)
        other.start()
        time.sleep(0.5)  # the other transaction is now waiting for the lock this one holds
        assert not second
    other.join(timeout=30)

    (outcome,) = second
    assert isinstance(outcome, promotion.Transition), outcome
    assert (outcome.replaced.number, outcome.deployed.number) == (1, 2)
    assert state(sessions)[:3] == (2, 3, [(0, "retired"), (1, "retired"), (2, "deployed")])
