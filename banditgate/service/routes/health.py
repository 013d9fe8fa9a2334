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
    responses={503: {"description": "database unreachable, no policy loaded, or the decision process restarting"}},
)
def healthz(runtime: Runtime = Depends(get_runtime)) -> JSONResponse:
    """200 when the ledger database answers, policies are loaded and decisions can be made; 503 otherwise."""
    database = runtime.database_ok()
    policies = runtime.cache.names()
    decisions = runtime.decisions.available()
    healthy = database and bool(policies) and decisions
    body = {
        "status": "ok" if healthy else "unavailable",
        "database": "ok" if database else "unreachable",
        "decisions": "ok" if decisions else "unavailable",
        "policies": policies,
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
