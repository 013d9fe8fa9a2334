"""``POST /v1/rewards``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from banditgate.ledger.decision_log import RewardRefused, UnknownDecision
from banditgate.ledger.records import RewardStatus
from banditgate.service import metrics
from banditgate.service.clock import request_time
from banditgate.service.deps import get_runtime
from banditgate.service.runtime import Runtime
from banditgate.service.schemas import RewardRequest, RewardResponse, error_responses

router = APIRouter(prefix="/v1/rewards", tags=["rewards"])


@router.post(
    "",
    response_model=RewardResponse,
    status_code=201,
    responses={
        200: {"description": "duplicate: same value as the latest revision, nothing written"},
        202: {
            "description": "pending join (Kafka transport): the decision was made by another instance or is not "
            "joined yet; the reward is logged and published, and the joiner joins it"
        },
        **error_responses(404, 409, 422),
    },
)
async def post_reward(
    body: RewardRequest, request: Request, response: Response, runtime: Runtime = Depends(get_runtime)
) -> RewardResponse:
    """Record the outcome of a decision.

    201 when recorded (``status`` ``recorded``, or ``revised`` when it changes the latest value: both
    revisions are kept and the latest wins for training); 200 for a duplicate of the latest value.
    422 for a kind not declared in the ``reward_kinds`` setting, or a value outside its kind's rule (a binary
    kind, such as ``authorisation`` and ``chargeback``, takes 0 or 1). 409 when the decision already has
    ``max_reward_revisions`` revisions of the kind, or when concurrent revisions of the same reward kept
    conflicting (``Retry-After`` says when to send it again; nothing was recorded).

    With a Kafka transport, a reward for a decision this instance did not log (another instance may have made
    it) is logged and published all the same: 202 with ``status`` ``pending join``; the joiner joins it to its
    decision in the central ledger. Revisions are then counted per instance; the ledger numbers them again.
    The embedded transport answers 404 for an unknown decision.
    """
    try:
        received_at = request_time(request, runtime.settings)
        result = await runtime.decisions.log_reward(
            body.decision_id, body.kind, body.reward, body.observed_at or received_at, received_at
        )
    except UnknownDecision as exc:
        raise HTTPException(404, str(exc)) from None
    except RewardRefused as exc:
        headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        raise HTTPException(exc.status, str(exc), headers=headers) from None
    if result.status is RewardStatus.DUPLICATE:
        response.status_code = 200
    elif result.status is RewardStatus.PENDING_JOIN:
        response.status_code = 202
    metrics.REWARDS.labels(body.kind, result.status.value).inc()
    reward = result.reward
    return RewardResponse(
        decision_id=reward.decision_id,
        kind=reward.kind,
        reward=reward.value,
        revision=reward.revision,
        observed_at=reward.observed_at,
        received_at=reward.received_at,
        status=result.status.value,
    )
