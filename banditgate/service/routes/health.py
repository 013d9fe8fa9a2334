"""``GET /healthz`` and ``GET /metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from banditgate import __version__
from banditgate.service.deps import get_runtime
from banditgate.service.metrics import render_metrics
from banditgate.service.runtime import Runtime

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    responses={
        503: {
            "description": "database unreachable, no policy loaded, the decision process restarting, or (Kafka "
            "transport) the outbox backlog at its bound"
        }
    },
)
def healthz(runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    """200 when the ledger database answers, policies are loaded and decisions can be made; 503 otherwise.

    ``transport`` says where decisions are logged: ``embedded`` (the ledger database), or ``kafka`` with the
    outbox's ``backlog`` (events the broker has not acknowledged), its bound, and the ``broker`` as the relay
    last saw it (``ok``, ``unreachable`` with ``broker_error``, or ``unknown`` before its first attempt).
    """
    database = runtime.database_ok()
    policies = runtime.cache.names()
    decisions = runtime.decisions.available()
    transport: dict[str, object] = {"kind": "embedded"}
    outbox = runtime.outbox()
    if outbox is not None:
        # Broker down: still healthy (decisions go on into the outbox) until the backlog reaches its bound.
        state = outbox.state()
        full = state.backlog >= runtime.settings.outbox_max_backlog
        decisions = decisions and not full
        transport = {
            "kind": "kafka",
            "instance": state.instance,
            "broker": state.broker,
            "backlog": state.backlog,
            "max_backlog": runtime.settings.outbox_max_backlog,
            "delivered_through": state.delivered_through,
        }
        if state.broker_error and state.broker != "ok":
            transport["broker_error"] = state.broker_error
    healthy = database and bool(policies) and decisions
    body = {
        "status": "ok" if healthy else "unavailable",
        "database": "ok" if database else "unreachable",
        "decisions": "ok" if decisions else "unavailable",
        "policies": policies,
        "transport": transport,
        "version": __version__,
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text exposition format", "content": {"text/plain": {}}}},
)
def prometheus_metrics() -> Response:
    """Prometheus metrics of this process (of all workers with ``PROMETHEUS_MULTIPROC_DIR``)."""
    payload, content_type = render_metrics()
    return Response(payload, media_type=content_type)
