"""The FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from banditgate import __version__
from banditgate.ledger.writer import WriterStopped
from banditgate.service.metrics import RequestMetricsMiddleware
from banditgate.service.routes import decisions, health, policies, rewards
from banditgate.service.runtime import Runtime
from banditgate.service.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = await Runtime.start(settings)
        try:
            yield
        finally:
            await app.state.runtime.stop()

    app = FastAPI(
        title="banditgate",
        version=__version__,
        description="Contextual-bandit decisions for payment processing, with logged propensities.",
        lifespan=lifespan,
    )
    app.add_middleware(RequestMetricsMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(SQLAlchemyError, _ledger_unavailable)
    app.add_exception_handler(WriterStopped, _ledger_unavailable)
    for module in (decisions, rewards, policies, health):
        app.include_router(module.router)
    return app


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 with one readable line plus the structured errors (never echoing the input: it may hold NaN)."""
    assert isinstance(exc, RequestValidationError)
    details = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if error.get("type") == "model_attributes_type" and not loc:
            message = "the body must be a JSON object, sent with Content-Type: application/json"
        details.append({"loc": loc, "msg": message, "type": error.get("type", "value_error")})
    summary = "; ".join(f"{'.'.join(d['loc']) or 'body'}: {d['msg']}" for d in details)
    return JSONResponse({"message": summary or "invalid request", "detail": details}, status_code=422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"message": str(exc.detail), "detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
    )


async def _ledger_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("ledger unavailable on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"message": "the decision log is unavailable; nothing was recorded, retry later"}, status_code=503
    )
