from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.records import DecisionRecord
from banditgate.ledger.registry import PolicySpec, put_policy
from banditgate.ledger.writer import BatchingWriter


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the whole test: the writer lives on the loop it was started in."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def writer(sessions: sessionmaker[Session], loop: asyncio.AbstractEventLoop) -> Iterator[BatchingWriter]:
    writer = BatchingWriter(sessions, max_batch=64)
    with sessions() as session, session.begin():
        put_policy(session, "default", PolicySpec(), actor="test")

    async def start() -> None:
        writer.start()

    loop.run_until_complete(start())
    yield writer
    loop.run_until_complete(writer.stop())


def make_record(decision_id: str, **overrides: object) -> DecisionRecord:
    fields: dict = {
        "decision_id": decision_id,
        "policy": "default",
        "generation": 0,
        "context": {"amount_eur": 12.5, "issuer_country": "NL", "is_recurring": False, "note": None},
        "actions": [{"id": "a", "features": {}}, {"id": "b", "features": {"fee_bps": 12}}],
        "probabilities": [0.1, 0.9],
        "action_id": "b",
        "propensity": 0.9,
        "exploration": "squarecb",
        "exploration_params": {"gamma": 10.0, "floor": 0.01},
        "model_sha256": "f" * 64,
        "draw": 0.5,
        "request_sha256": "0" * 64,
        "decided_at": datetime(2026, 11, 25, 14, 0, 0, 123000, tzinfo=UTC),
    }
    fields.update(overrides)
    return DecisionRecord(**fields)
