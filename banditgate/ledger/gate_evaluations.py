"""Stored gate evaluations: what the sufficiency gate said about a generation, and when."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from banditgate.ledger.models import GateEvaluation


@dataclass(frozen=True)
class GateEvaluationSummary:
    """A stored evaluation's verdict, without its report."""

    id: int
    as_of: datetime
    computed_at: datetime
    level: str
    score: float


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


def latest_gate_levels(session: Session, policy: str) -> dict[int, GateEvaluationSummary]:
    """The most recently computed evaluation of each generation of ``policy``, without its report."""
    rows = session.execute(
        select(
            GateEvaluation.id,
            GateEvaluation.generation,
            GateEvaluation.as_of,
            GateEvaluation.computed_at,
            GateEvaluation.level,
            GateEvaluation.score,
        )
        .where(GateEvaluation.policy == policy)
        .order_by(GateEvaluation.computed_at, GateEvaluation.id)
    ).all()
    # Ascending, so the last row of each generation wins; a policy has tens of evaluations per generation.
    return {
        row.generation: GateEvaluationSummary(row.id, row.as_of, row.computed_at, row.level, row.score) for row in rows
    }
