"""``/v1/policies``: read policies and their generations; create or configure one (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Response
from sqlalchemy.orm import Session

from banditgate.ledger import registry
from banditgate.service.deps import get_runtime, get_session, require_admin
from banditgate.service.runtime import Runtime
from banditgate.service.schemas import (
    GenerationOut,
    PolicyDetail,
    PolicyIn,
    PolicyName,
    PolicyOut,
    error_responses,
)

router = APIRouter(prefix="/v1/policies", tags=["policies"])


@router.get("", response_model=list[PolicyOut])
def list_policies(session: Session = Depends(get_session)) -> list[PolicyOut]:
    return [PolicyOut.model_validate(p) for p in registry.list_policies(session)]


@router.get("/{name}", response_model=PolicyDetail, responses=error_responses(404, 422))
def get_policy(name: Annotated[PolicyName, Path()], session: Session = Depends(get_session)) -> PolicyDetail:
    """A policy's configuration and all its generations."""
    try:
        policy = registry.get_policy(session, name)
    except registry.UnknownPolicy as exc:
        raise HTTPException(404, str(exc)) from None
    generations = [GenerationOut.model_validate(g) for g in registry.list_generations(session, name)]
    return PolicyDetail(**PolicyOut.model_validate(policy).model_dump(), generations=generations)


@router.put(
    "/{name}",
    response_model=PolicyOut,
    responses={200: {"description": "changed"}, 201: {"description": "created"}, **error_responses(401, 403, 422)},
)
async def put_policy(
    body: PolicyIn,
    response: Response,
    name: Annotated[PolicyName, Path()],
    actor: str = Depends(require_admin),
    runtime: Runtime = Depends(get_runtime),
) -> PolicyOut:
    """Create a policy (starting at a uniform generation 0) or change its exploration rule, floor or oracle.

    The change takes effect for new decisions at once in this process, and within the refresh interval
    in every other serving process. It is recorded in the audit trail with ``X-Actor`` and ``reason``.
    """
    try:
        spec = registry.PolicySpec(**body.model_dump(exclude={"reason"}))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    policy, created = await runtime.writer.call(
        lambda s: registry.put_policy(s, name, spec, actor=actor, reason=body.reason)
    )
    await runtime.refresh_policies()
    response.status_code = 201 if created else 200
    return PolicyOut.model_validate(policy)
