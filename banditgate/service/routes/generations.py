"""Generations of a policy: read them and the audit trail (open); promote and roll back (admin).

A promotion or rollback is committed through the writer, then this process reloads the policy at once;
every other serving process switches on its next poll (within ``policy_refresh_seconds``).

The audit trail is open like the other reads: it holds who changed what, when and why, and the same actors
and reasons are already readable on the generations (``promoted_by``, ``promoted_reason``). Closing only
the trail would hide nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session

from banditgate.ledger import promotion, registry
from banditgate.ledger.artifacts import ArtifactError
from banditgate.ledger.gate_evaluations import gate_history, latest_gate_evaluation, store_gate_evaluation
from banditgate.ledger.models import Generation
from banditgate.ledger.types import utcnow
from banditgate.monitoring.gate import GateOptions, GateResult, evaluate_gate
from banditgate.monitoring.promotion_gate import Override, SufficiencyGate
from banditgate.service.deps import get_runtime, get_session, require_admin
from banditgate.service.policy_cache import serving_policy
from banditgate.service.runtime import Runtime
from banditgate.service.schemas import (
    GenerationOut,
    PolicyName,
    Reason,
    StrictModel,
    Timestamp,
    error_responses,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/policies", tags=["generations"])

MAX_GENERATION = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL
GenerationNumber = Annotated[int, Path(ge=0, le=MAX_GENERATION, description="generation number")]


class OverrideIn(StrictModel):
    """Permission to promote without SUFFICIENT evidence; it names who, why, and until when it holds."""

    by: Annotated[Reason, StringConstraints(max_length=128)] = Field(description="who takes the responsibility")
    reason: Reason
    until: Timestamp = Field(description="when the override stops holding (ISO 8601 with a time zone)")


class PromoteIn(StrictModel):
    reason: Reason
    override: OverrideIn | None = Field(
        default=None, description="promote even if the gate is not SUFFICIENT (recorded, and it expires)"
    )


def _whole_number(value: Any) -> Any:
    # JSON Schema's "integer" includes 3.0; a boolean is not one (strict=True refuses it).
    return int(value) if isinstance(value, float) and value.is_integer() else value


class RollbackIn(StrictModel):
    reason: Reason
    to: Annotated[int, BeforeValidator(_whole_number), Field(ge=0, le=MAX_GENERATION, strict=True)] | None = Field(
        default=None, description="retired generation to redeploy (default: the one the deployed generation replaced)"
    )


class GenerationDetail(GenerationOut):
    artifact_path: str | None
    ope_report: dict[str, Any] | None
    gate_report: dict[str, Any] | None


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    policy: str
    action: str
    actor: str
    reason: str
    details: dict[str, Any]
    at: datetime


class TransitionOut(BaseModel):
    policy: str
    action: Literal["promote", "rollback"]
    generation: GenerationDetail
    replaced: GenerationOut
    audit_event: AuditEventOut


async def promotion_gate(
    body: PromoteIn, name: Annotated[PolicyName, Path()], runtime: Runtime = Depends(get_runtime)
) -> promotion.PromotionGate:
    """The gate every promotion must pass: the sufficiency gate, with the request's override if any."""
    override = None if body.override is None else Override(body.override.by, body.override.reason, body.override.until)
    return SufficiencyGate(max_age=timedelta(hours=runtime.settings.gate_for(name).max_age_hours), override=override)


@router.get("/{name}/generations", response_model=list[GenerationOut], responses=error_responses(404, 422))
def list_generations(
    name: Annotated[PolicyName, Path()], session: Session = Depends(get_session)
) -> list[GenerationOut]:
    """All generations of a policy, oldest first."""
    _policy_or_404(session, name)
    return [GenerationOut.model_validate(g) for g in registry.list_generations(session, name)]


@router.get("/{name}/generations/{number}", response_model=GenerationDetail, responses=error_responses(404, 422))
def get_generation(
    name: Annotated[PolicyName, Path()], number: GenerationNumber, session: Session = Depends(get_session)
) -> GenerationDetail:
    """One generation, with its OPE and gate reports."""
    _policy_or_404(session, name)
    generation = registry.get_generation(session, name, number)
    if generation is None:
        raise HTTPException(404, str(promotion.UnknownGeneration(name, number)))
    return GenerationDetail.model_validate(generation)


@router.get("/{name}/audit", response_model=list[AuditEventOut], responses=error_responses(404, 422))
def audit_trail(
    name: Annotated[PolicyName, Path()],
    limit: Annotated[int, Query(ge=1, le=1000, description="most events returned")] = 100,
    session: Session = Depends(get_session),
) -> list[AuditEventOut]:
    """Who changed the policy, when and why (creation, configuration, promotions, rollbacks), newest first."""
    _policy_or_404(session, name)
    return [AuditEventOut.model_validate(e) for e in registry.list_audit_events(session, name, limit)]


@router.post(
    "/{name}/generations/{number}/promote",
    response_model=TransitionOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
async def promote(
    body: PromoteIn,
    name: Annotated[PolicyName, Path()],
    number: GenerationNumber,
    actor: str = Depends(require_admin),
    runtime: Runtime = Depends(get_runtime),
    gate: promotion.PromotionGate = Depends(promotion_gate),
) -> Response | TransitionOut:
    """Deploy a candidate generation; the deployed one is retired (admin).

    The sufficiency gate must say SUFFICIENT: the latest stored gate evaluation of the generation is used if
    it is recent enough (``gate.max_age_hours``), otherwise one is computed now and stored. Without
    SUFFICIENT evidence, an ``override`` naming who, why and until when lets the promotion through; both the
    evaluation and the override are recorded with the promotion.

    Refused with 409 when the generation is already deployed, is retired (roll back to it instead), cannot be
    loaded, or the promotion gate refuses it (the gate's report is in ``detail.gate_report``). Recorded with
    ``X-Actor`` and ``reason`` on the generation and in the audit trail.
    """
    try:
        candidate = await _check_it_can_serve(runtime, lambda s: _candidate(s, name, number))
        # Not a candidate: promote() refuses it below, saying why; no evidence to gather for that.
        if candidate is not None and isinstance(gate, SufficiencyGate):
            await _ensure_recent_evaluation(runtime, name, number, gate.max_age)
        transition = await runtime.writer.call(
            lambda s: promotion.promote(s, name, number, actor=actor, reason=body.reason, gate=gate)
        )
    except promotion.GateRefused as exc:
        refusal = {"message": str(exc), "detail": {"gate_report": exc.report}}
        return Response(json.dumps(refusal, ensure_ascii=True, default=str), 409, media_type="application/json")
    except (registry.UnknownPolicy, promotion.PromotionError) as exc:
        raise _http_error(exc) from None
    except ArtifactError as exc:
        # The gate evaluation could not load a generation's model (e.g. the deployed one, for disagreement).
        raise HTTPException(409, f"the sufficiency gate cannot be evaluated: {exc}") from None
    return await _switched(runtime, name, transition)


@router.get(
    "/{name}/generations/{number}/gate",
    responses={200: {"description": "the gate report (as `banditgate gate --json`)"}, **error_responses(404, 409, 422)},
)
async def gate_report(
    name: Annotated[PolicyName, Path()],
    number: GenerationNumber,
    runtime: Runtime = Depends(get_runtime),
    as_of: Annotated[Timestamp | None, Query(description="judge as of this time (default: now)")] = None,
    window_days: Annotated[float | None, Query(gt=0, le=3650, description="current window in days")] = None,
    what_if: Annotated[
        Literal["none", "covariate", "concept", "prior", "mixed"] | None,
        Query(description="also project S forward under a blind-period scenario"),
    ] = None,
    store: Annotated[bool, Query(description="keep the evaluation (promotion relies on the latest one)")] = False,
) -> Response:
    """How sufficient the evidence behind a generation is, why, and when it will be (see ``banditgate gate``).

    Computed on request, in a worker thread; on a busy decision server prefer ``banditgate gate`` from a
    separate process (a cron job), which stores its evaluations for promotions to use.
    """
    changes = {} if window_days is None else {"window_days": window_days}
    try:
        result = await asyncio.to_thread(
            _evaluate, runtime, name, number, as_of, runtime.settings.gate_for(name).options(**changes), what_if
        )
    except (registry.UnknownPolicy, promotion.PromotionError) as exc:
        raise _http_error(exc) from None
    except ArtifactError as exc:
        raise HTTPException(409, str(exc)) from None
    if store:
        stored = await runtime.writer.call(lambda s: store_gate_evaluation(s, result.report).id)
        result.report["evaluation_id"] = stored
    return Response(json.dumps(result.report, default=str), media_type="application/json")


@router.post("/{name}/rollback", response_model=TransitionOut, responses=error_responses(401, 403, 404, 409, 422))
async def rollback(
    body: RollbackIn,
    name: Annotated[PolicyName, Path()],
    actor: str = Depends(require_admin),
    runtime: Runtime = Depends(get_runtime),
) -> TransitionOut:
    """Redeploy a retired generation; the deployed one is retired (admin).

    Without ``to``: the generation the deployed one replaced, so a second rollback undoes the first. ``to``
    names any retired generation, 0 included. Refused with 409 when there is nothing to roll back to, or ``to``
    is deployed, a candidate (promote it instead) or cannot be loaded.
    """
    try:
        target = await _check_it_can_serve(runtime, lambda s: promotion.rollback_target(s, name, body.to))
        transition = await runtime.writer.call(
            lambda s: promotion.rollback(s, name, actor=actor, reason=body.reason, to=target)
        )
    except (registry.UnknownPolicy, promotion.PromotionError) as exc:
        raise _http_error(exc) from None
    return await _switched(runtime, name, transition)


def _evaluate(
    runtime: Runtime,
    name: str,
    number: int,
    as_of: datetime | None,
    options: GateOptions,
    what_if: str | None = None,
) -> GateResult:
    with runtime.sessions() as session, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # evidently's pandas deprecations
        history = [row.report for row in gate_history(session, name, number)]
        return evaluate_gate(
            session,
            runtime.settings.artifact_dir,
            name,
            number,
            as_of=as_of,
            options=options,
            history=history,
            what_if=what_if,
        )


async def _ensure_recent_evaluation(runtime: Runtime, name: str, number: int, max_age: timedelta) -> None:
    """Compute and store a gate evaluation unless one computed within ``max_age`` exists."""

    def latest_age() -> timedelta | None:
        with runtime.sessions() as session:
            latest = latest_gate_evaluation(session, name, number)
            return None if latest is None else utcnow() - latest.computed_at

    age = await asyncio.to_thread(latest_age)
    if age is not None and age <= max_age:
        return
    options = runtime.settings.gate_for(name).options()
    result = await asyncio.to_thread(_evaluate, runtime, name, number, None, options)
    await runtime.writer.call(lambda s: store_gate_evaluation(s, result.report))


def _policy_or_404(session: Session, name: str) -> None:
    try:
        registry.get_policy(session, name)
    except registry.UnknownPolicy as exc:
        raise HTTPException(404, str(exc)) from None


def _http_error(exc: registry.UnknownPolicy | promotion.PromotionError) -> HTTPException:
    if isinstance(exc, registry.UnknownPolicy | promotion.UnknownGeneration):
        return HTTPException(404, str(exc))
    if isinstance(exc, promotion.MissingAttribution):
        return HTTPException(422, str(exc))
    return HTTPException(409, str(exc))


def _candidate(session: Session, name: str, number: int) -> Generation | None:
    """The generation to promote, if it is a candidate (otherwise promote() refuses it, saying why)."""
    registry.get_policy(session, name)
    generation = registry.get_generation(session, name, number)
    return generation if generation is not None and generation.status == "candidate" else None


async def _check_it_can_serve(runtime: Runtime, target: Callable[[Session], Generation | None]) -> int | None:
    """Refuse, before anything is written, a generation whose artifact this process cannot load.

    Otherwise the registry would say it is deployed while every serving process keeps the previous one.
    Returns the number of the generation ``target`` finds (a rollback resolves its default target here).
    """

    def check() -> int | None:
        with runtime.sessions() as session:
            generation = target(session)
            if generation is None:
                return None
            policy = registry.get_policy(session, generation.policy)
            try:
                serving_policy(policy, generation, runtime.settings.artifact_dir)
            except Exception as exc:
                raise promotion.TransitionConflict(
                    f"generation {generation.number} of policy {policy.name!r} cannot serve: {exc}"
                ) from exc
            return generation.number

    return await asyncio.to_thread(check)


async def _switched(runtime: Runtime, name: str, transition: promotion.Transition) -> TransitionOut:
    """Reload the policy in this process at once, and describe the transition."""
    try:
        await runtime.refresh_policies()
    except Exception:
        # Committed already: answering 503 ("nothing was recorded") would be wrong. The poll will catch up.
        log.exception("policy %s changed, but reloading it failed; this process switches on its next poll", name)
    return TransitionOut(
        policy=name,
        action=transition.action,
        generation=GenerationDetail.model_validate(transition.deployed),
        replaced=GenerationOut.model_validate(transition.replaced),
        audit_event=AuditEventOut.model_validate(transition.event),
    )
