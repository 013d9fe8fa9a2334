"""Generations of a policy: read them, their stored gate evaluations and the audit trail (open); compute a
gate evaluation, promote and roll back (admin).

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
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session

from banditgate.ledger import promotion, registry
from banditgate.ledger.artifacts import generation_rule, verified_artifact
from banditgate.ledger.gate_evaluations import get_gate_evaluation, latest_gate_evaluation_id
from banditgate.ledger.models import Generation
from banditgate.monitoring.promotion_gate import Override, SufficiencyGate
from banditgate.service.deps import get_runtime, get_session, require_admin
from banditgate.service.gate_worker import GateBusy, GateJob, GateJobFailed
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
EvaluationId = Annotated[int, Path(ge=1, le=2**31 - 1, description="id of a stored gate evaluation")]


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


class GateRequestIn(StrictModel):
    """What to compute; every field is optional. An evaluation as of another time than now, or with another
    window than the policy's, is stored for reading, but no promotion relies on it."""

    as_of: Timestamp | None = Field(default=None, description="judge as of this time (default: now)")
    window_days: Annotated[float, Field(gt=0, le=3650)] | None = Field(
        default=None, description="current window in days (default: the policy's gate settings)"
    )
    what_if: Literal["none", "covariate", "concept", "prior", "mixed"] | None = Field(
        default=None, description="also project S forward under a blind-period scenario"
    )
    store: bool = Field(default=True, description="keep the evaluation (false: compute and answer only)")


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
    configured = runtime.settings.gate_for(name)
    return SufficiencyGate(configured.options(), max_age=timedelta(hours=configured.max_age_hours), override=override)


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

    The sufficiency gate must say SUFFICIENT. It relies on the latest *usable* stored gate evaluation of the
    generation: one as of a time within ``gate.max_age_hours`` of now, computed as of then, with the policy's
    configured gate options (window, preset and parameters, reward kinds, segment keys, sample size). Nothing is
    computed here: without a usable evaluation the promotion is refused (409, saying so); compute one first with
    ``banditgate gate`` (e.g. from cron) or ``POST .../gate``. Without SUFFICIENT evidence, an ``override``
    naming who, why and until when lets the promotion through; both the evaluation and the override are
    recorded with the promotion.

    Refused with 409 when the generation is already deployed, is retired (roll back to it instead), cannot be
    loaded, or the promotion gate refuses it (the gate's report is in ``detail.gate_report``). Recorded with
    ``X-Actor`` and ``reason`` on the generation and in the audit trail.
    """
    try:
        await _check_it_can_serve(runtime, lambda s: _candidate(s, name, number))
        transition = await runtime.writer.call(
            lambda s: promotion.promote(s, name, number, actor=actor, reason=body.reason, gate=gate)
        )
    except promotion.GateRefused as exc:
        refusal = {"message": str(exc), "detail": {"gate_report": exc.report}}
        return Response(json.dumps(refusal, ensure_ascii=True, default=str), 409, media_type="application/json")
    except (registry.UnknownPolicy, promotion.PromotionError) as exc:
        raise _http_error(exc) from None
    return await _switched(runtime, name, transition)


NO_EVALUATION = (
    "compute one with `banditgate gate --policy {name} --generation {number}` or "
    "POST /v1/policies/{name}/generations/{number}/gate with the admin key"
)


@router.get(
    "/{name}/generations/{number}/gate",
    responses={
        200: {"description": "the latest stored gate report (as `banditgate gate --json`), with its `evaluation_id`"},
        **error_responses(404, 422),
    },
)
def latest_gate_report(
    name: Annotated[PolicyName, Path()], number: GenerationNumber, session: Session = Depends(get_session)
) -> Response:
    """The latest stored gate evaluation of a generation: how sufficient its evidence was, why, and when it will
    be (see ``banditgate gate``). Nothing is computed: 404 when none is stored, saying how to compute one
    (``banditgate gate``, or ``POST`` on this path with the admin key)."""
    _generation_or_404(session, name, number)
    evaluation_id = latest_gate_evaluation_id(session, name, number)
    if evaluation_id is None:
        hint = NO_EVALUATION.format(name=name, number=number)
        raise HTTPException(404, f"no gate evaluation of generation {number} of policy {name!r} is stored: {hint}")
    return _stored_report(session, name, number, evaluation_id)


@router.get(
    "/{name}/generations/{number}/gate/{evaluation_id}",
    responses={200: {"description": "a stored gate report, with its `evaluation_id`"}, **error_responses(404, 422)},
)
def stored_gate_report(
    name: Annotated[PolicyName, Path()],
    number: GenerationNumber,
    evaluation_id: EvaluationId,
    session: Session = Depends(get_session),
) -> Response:
    """One stored gate evaluation of a generation, by id (the id a promotion's gate report names)."""
    _generation_or_404(session, name, number)
    return _stored_report(session, name, number, evaluation_id)


class _ReportCache:
    """The JSON of the last few stored reports served: a stored evaluation never changes, and decoding and
    encoding a report (tens of kilobytes, per segment and proxy) on every read costs the serving process more
    than a decision does."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()  # the reads run in the thread pool

    def get(self, key: tuple[str, str, int, int]) -> bytes | None:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
            return self._entries.get(key)

    def put(self, key: tuple[str, str, int, int], body: bytes) -> None:
        with self._lock:
            self._entries[key] = body
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


_REPORTS = _ReportCache()


def _stored_report(session: Session, name: str, number: int, evaluation_id: int) -> Response:
    key = (session.get_bind().url.render_as_string(), name, number, evaluation_id)  # one cache, any ledger
    body = _REPORTS.get(key)
    if body is None:
        evaluation = get_gate_evaluation(session, name, number, evaluation_id)
        if evaluation is None:
            raise HTTPException(404, f"generation {number} of policy {name!r} has no gate evaluation {evaluation_id}")
        body = json.dumps({**evaluation.report, "evaluation_id": evaluation.id}, default=str).encode()
        _REPORTS.put(key, body)
    return Response(body, media_type="application/json")


@router.post(
    "/{name}/generations/{number}/gate",
    status_code=201,
    responses={
        201: {"description": "the new gate report (as `banditgate gate --json`), with its `evaluation_id` if stored"},
        503: {
            "description": "another gate evaluation is running on this server (see `Retry-After`), or this one "
            "timed out",
            "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
        },
        **error_responses(401, 403, 404, 409, 422),
    },
)
async def compute_gate_report(
    name: Annotated[PolicyName, Path()],
    number: GenerationNumber,
    body: GateRequestIn | None = None,
    _actor: str = Depends(require_admin),
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    """Compute a gate evaluation of a generation now, and store it (admin).

    It runs in a worker process of its own, at a lower CPU priority, never in the serving process: one at a time
    per host, so a request that finds one running gets 503 with ``Retry-After`` (about as long as the last one
    took); it is stopped after ``gate_timeout_seconds``. A promotion relies only on evaluations as of now with the
    policy's configured options: one with another ``as_of`` or ``window_days`` is stored for reading only.
    ``banditgate gate`` computes the same evaluation from a process of its own (a cron job), without a server.

    404 for an unknown policy or generation, 409 when a model artifact cannot be loaded.
    """
    body = body or GateRequestIn()
    if runtime.gate_worker.busy:  # shed the load before touching the database
        busy = GateBusy(runtime.gate_worker.retry_after)
        raise HTTPException(503, str(busy), headers={"Retry-After": str(busy.retry_after)})

    def check() -> None:
        with runtime.sessions() as session:
            _generation_or_404(session, name, number)

    await asyncio.to_thread(check)  # the common mistakes are answered without starting a worker
    job = GateJob(
        policy=name,
        generation=number,
        gate=runtime.settings.gate_for(name).model_dump(mode="json"),
        as_of=None if body.as_of is None else body.as_of.isoformat(),
        window_days=body.window_days,
        what_if=body.what_if,
        store=body.store,
    )
    try:
        report = await runtime.gate_worker.run(job)
    except GateBusy as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    except GateJobFailed as exc:
        status = {"unknown": 404, "artifact": 409, "timeout": 503}.get(exc.kind, 500)
        if status == 500:
            log.error("gate evaluation of %s generation %s failed: %s", name, number, exc)
        raise HTTPException(status, str(exc)) from None
    return _report_response(report, status=201)


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


def _report_response(report: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(report, default=str), status_code=status, media_type="application/json")


def _policy_or_404(session: Session, name: str) -> None:
    try:
        registry.get_policy(session, name)
    except registry.UnknownPolicy as exc:
        raise HTTPException(404, str(exc)) from None


def _generation_or_404(session: Session, name: str, number: int) -> None:
    _policy_or_404(session, name)
    if registry.get_generation(session, name, number) is None:
        raise HTTPException(404, str(promotion.UnknownGeneration(name, number)))


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
    With a decision process, the artifact's place and sha256 are checked and its exploration rule built, but
    the model is not loaded here: that would import its library (seconds holding the GIL) in the process that
    answers HTTP, stalling every decision in flight; the decision processes load it when they switch.
    """
    load_models = not runtime.settings.decision_process

    def check() -> int | None:
        with runtime.sessions() as session:
            generation = target(session)
            if generation is None:
                return None
            policy = registry.get_policy(session, generation.policy)
            try:
                if load_models:
                    serving_policy(policy, generation, runtime.settings.artifact_dir)
                else:
                    generation_rule(policy, generation)
                    if generation.oracle is not None:
                        verified_artifact(generation, runtime.settings.artifact_dir)
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
