"""``POST /v1/decisions`` and ``GET /v1/decisions/{decision_id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response

from banditgate.ledger.decision_log import DecisionLog
from banditgate.ledger.records import DecisionRecord
from banditgate.ledger.registry import UnknownPolicy
from banditgate.service import metrics
from banditgate.service.clock import request_time
from banditgate.service.decider import format_timestamp
from banditgate.service.deps import get_decision_log, get_runtime
from banditgate.service.runtime import Runtime
from banditgate.service.schemas import (
    ActionOut,
    DecisionDetail,
    DecisionRequest,
    DecisionResponse,
    Identifier,
    RewardOut,
    error_responses,
)

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])


@router.post(
    "",
    response_model=None,
    responses={200: {"model": DecisionResponse, "description": "the decision"}, **error_responses(409, 422)},
)
async def decide(body: DecisionRequest, request: Request, runtime: Runtime = Depends(get_runtime)) -> Response:
    """Choose an action for one transaction; the decision is durably logged before the response is sent.

    The same ``decision_id`` again returns the identical response and writes nothing.
    """
    actions = [{"id": action.id, "features": action.features} for action in body.actions]
    try:
        now = request_time(request, runtime.settings)
        record, exploited = runtime.decider.decide(body.context, actions, body.decision_id, body.policy, now)
    except UnknownPolicy as exc:
        raise HTTPException(422, f"policy: {exc}") from None
    stored = await runtime.decision_log.log_decision(record)
    if stored is not record:
        if stored.request_sha256 != record.request_sha256:
            raise HTTPException(409, f"decision_id {record.decision_id!r} was already used for a different request")
        return _json(to_response(stored))
    metrics.DECISIONS.labels(
        record.policy,
        str(record.generation),
        metrics.action_label(record.policy, record.action_id),
        "false" if exploited else "true",
    ).inc()
    if "fallback" in record.exploration_params:
        metrics.DECISION_FALLBACKS.labels(record.policy).inc()
    return _json(to_response(record))


def _json(response: DecisionResponse) -> Response:
    # Serialised directly: the hot path skips FastAPI's re-validation of a model built a line earlier.
    return Response(response.__pydantic_serializer__.to_json(response), media_type="application/json")


@router.get("/{decision_id:path}", response_model=DecisionDetail, responses=error_responses(404, 422))
def get_decision(
    decision_id: Annotated[Identifier, Path()], decision_log: DecisionLog = Depends(get_decision_log)
) -> DecisionDetail:
    """A logged decision with its context, action set, full probability vector and every reward revision."""
    record = decision_log.get_decision(decision_id)
    if record is None:
        raise HTTPException(404, f"unknown decision_id {decision_id!r}")
    rewards = [
        RewardOut(
            decision_id=r.decision_id,
            kind=r.kind,
            reward=r.value,
            revision=r.revision,
            observed_at=r.observed_at,
            received_at=r.received_at,
        )
        for r in decision_log.get_rewards(decision_id)
    ]
    return DecisionDetail(
        **to_response(record).model_dump(),
        context=record.context,
        actions=[
            ActionOut(id=a["id"], features=a["features"], probability=p)
            for a, p in zip(record.actions, record.probabilities, strict=True)
        ],
        exploration_params=record.exploration_params,
        draw=record.draw,
        rewards=rewards,
    )


def to_response(record: DecisionRecord) -> DecisionResponse:
    return DecisionResponse(
        decision_id=record.decision_id,
        action_id=record.action_id,
        propensity=record.propensity,
        probabilities={a["id"]: p for a, p in zip(record.actions, record.probabilities, strict=True)},
        policy=record.policy,
        generation=record.generation,
        exploration=record.exploration,
        model_sha256=record.model_sha256,
        decided_at=format_timestamp(record.decided_at),
    )
