"""Stored gate evaluations: what the sufficiency gate said about a generation, and when."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from banditgate.ledger.models import GateEvaluation


def store_gate_evaluation(session: Session, report: Mapping[str, Any]) -> GateEvaluation:
    """Keep a gate report (as :func:`banditgate.monitoring.gate.evaluate_gate` writes it); returns the row."""
    row = GateEvaluation(
        policy=report["policy"],
        generation=int(report["generation"]),
        as_of=datetime.fromisoformat(report["as_of"]),
        computed_at=datetime.fromisoformat(report["computed_at"]),
        level=report["level"],
        score=float(report["S"]),
        score_proxy=float(report["S_proxy"]),
        report=dict(report),
    )
    session.add(row)
    session.flush()
    return row


def latest_gate_evaluation_id(session: Session, policy: str, generation: int) -> int | None:
    """The id of the most recently computed evaluation of a generation, if any (its report is not read)."""
    return session.scalar(
        select(GateEvaluation.id)
        .where(GateEvaluation.policy == policy, GateEvaluation.generation == generation)
        .order_by(GateEvaluation.computed_at.desc(), GateEvaluation.id.desc())
        .limit(1)
    )


def get_gate_evaluation(session: Session, policy: str, generation: int, evaluation_id: int) -> GateEvaluation | None:
    """Evaluation ``evaluation_id``, if it is one of this generation's."""
    row = session.get(GateEvaluation, evaluation_id)
    return row if row is not None and (row.policy, row.generation) == (policy, generation) else None


def gate_evaluations_since(session: Session, policy: str, generation: int, since: datetime) -> list[GateEvaluation]:
    """The evaluations of a generation as of ``since`` or later, the latest ``as_of`` first (then the latest
    computed): the candidates for the evidence a promotion relies on."""
    return list(
        session.scalars(
            select(GateEvaluation)
            .where(
                GateEvaluation.policy == policy,
                GateEvaluation.generation == generation,
                GateEvaluation.as_of >= since,
            )
            .order_by(GateEvaluation.as_of.desc(), GateEvaluation.computed_at.desc(), GateEvaluation.id.desc())
        ).all()
    )


def gate_history(session: Session, policy: str, generation: int, limit: int = 30) -> list[GateEvaluation]:
    """The last ``limit`` evaluations of a generation, oldest first (for alerts and plots over time)."""
    rows = session.scalars(
        select(GateEvaluation)
        .where(GateEvaluation.policy == policy, GateEvaluation.generation == generation)
        .order_by(GateEvaluation.as_of.desc(), GateEvaluation.id.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))
