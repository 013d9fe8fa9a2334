"""``POST /v1/decisions`` and ``GET /v1/decisions/{decision_id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response

from banditgate.ledger.decision_log import DecisionLog
from banditgate.service import metrics
from banditgate.service.clock import stated_time
from banditgate.service.decision_service import DecisionAsked, to_response
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
    responses={200: {"model": DecisionResponse, "description": "the decision"}, **error_responses(404, 409, 422)},
)
async def decide(body: DecisionRequest, request: Request, runtime: Runtime = Depends(get_runtime)) -> Response:
    """Choose an action for one transaction; the decision is durably logged before the response is sent.

    The same ``decision_id`` again returns the identical response and writes nothing (reusing it for a
    different request is a 409). A ``policy`` that does not exist is a 404.
    """
    asked = DecisionAsked(
        context=body.context,
        actions=[{"id": action.id, "features": action.features} for action in body.actions],
        decision_id=body.decision_id,
        policy=body.policy,
        now=stated_time(request, runtime.settings),
    )
    outcome = await runtime.decisions.decide(asked)
    if outcome.status != 200:
        raise HTTPException(outcome.status, outcome.body.decode())
    new = outcome.new
    if new is not None:
        explored = "true" if new.explored else "false"
        action = metrics.action_label(new.policy, new.action_id)
        metrics.DECISIONS.labels(new.policy, str(new.generation), action, explored).inc()
        if new.fallback:
            metrics.DECISION_FALLBACKS.labels(new.policy).inc()
    return Response(outcome.body, media_type="application/json")


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
