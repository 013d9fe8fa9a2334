from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger import registry
from banditgate.ledger.models import AuditEvent
from banditgate.policies.oracles import sha256_hex


def test_new_policy_starts_with_a_deployed_uniform_generation_zero(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, session.begin():
        policy, created = registry.put_policy(session, "routing", registry.PolicySpec(), actor="alice")
    assert created and policy.deployed_generation == 0
    with sessions() as session:
        (generation,) = registry.list_generations(session, "routing")
    assert (generation.number, generation.status, generation.exploration, generation.oracle) == (
        0,
        "deployed",
        "uniform",
        None,
    )


def test_configuration_changes_bump_the_revision_and_are_audited(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, session.begin():
        registry.put_policy(session, "routing", registry.PolicySpec(), actor="alice")
        spec = registry.PolicySpec(exploration="softmax", exploration_params={"temperature": 0.05}, floor=0.02)
        policy, created = registry.put_policy(session, "routing", spec, actor="bob", reason="less greedy")
    assert not created and policy.revision == 2 and policy.floor == 0.02
    with sessions() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        assert registry.policy_revisions(session) == {"routing": 2}
    assert [(e.action, e.actor) for e in events] == [("create", "alice"), ("configure", "bob")]
    assert events[1].details["before"]["exploration"] == "squarecb"
    assert events[1].details["after"]["exploration"] == "softmax"
    assert events[1].reason == "less greedy"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exploration": "thompson"}, "unknown exploration rule"),
        ({"floor": 1.5}, "floor"),
        ({"exploration_params": {"floor": 0.1}}, "'floor' field"),
        ({"oracle": "xgboost"}, "unknown oracle"),
    ],
)
def test_policy_spec_refuses_bad_configuration(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        registry.PolicySpec(**kwargs)


def test_register_and_deploy_a_generation(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path, digest = registry.store_artifact(tmp_path, "routing", 1, b"model-bytes")
    assert (tmp_path / path).read_bytes() == b"model-bytes" and digest == sha256_hex(b"model-bytes")
    with sessions() as session, session.begin():
        registry.put_policy(session, "routing", registry.PolicySpec(), actor="alice")
        candidate = registry.register_generation(
            session,
            "routing",
            artifact_path=path,
            artifact_sha256=digest,
            oracle="lightgbm",
            oracle_params={},
            exploration="squarecb",
            exploration_params={"gamma": 40.0},
        )
        assert (candidate.number, candidate.parent, candidate.status) == (1, 0, "candidate")
        registry.deploy_generation(session, "routing", 1, actor="carol", reason="better OPE")
    with sessions() as session:
        statuses = [(g.number, g.status) for g in registry.list_generations(session, "routing")]
        policy = registry.get_policy(session, "routing")
    assert statuses == [(0, "retired"), (1, "deployed")]
    assert policy.deployed_generation == 1 and policy.revision == 2


def test_unknown_policy(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, pytest.raises(registry.UnknownPolicy, match="nope"):
        registry.get_policy(session, "nope")
