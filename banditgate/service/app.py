"""The FastAPI application."""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from banditgate import __version__
from banditgate.ledger.outbox import BacklogFull
from banditgate.ledger.writer import WriterStopped
from banditgate.service.decision_client import OutcomeUnknown
from banditgate.service.metrics import RequestMetricsMiddleware
from banditgate.service.routes import decisions, generations, health, policies, rewards, ui
from banditgate.service.runtime import Runtime
from banditgate.service.schemas import error_responses
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
        responses=error_responses(413, 422, 503),
    )
    app.add_middleware(RequestMetricsMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(SQLAlchemyError, _ledger_unavailable)
    app.add_exception_handler(WriterStopped, _ledger_unavailable)
    app.add_exception_handler(BacklogFull, _backlog_full)
    app.add_exception_handler(OutcomeUnknown, _outcome_unknown)
    for module in (decisions, rewards, policies, generations, health, ui):
        app.include_router(module.router)
    app.mount("/ui/static", ui.static_files(), name="ui-static")
    return app


def _error(status: int, message: str, detail: Any = None, headers: dict[str, str] | None = None) -> Response:
    # ASCII-escaped JSON: a message may quote client input, and that must never fail to encode.
    if isinstance(detail, str):
        detail = printable(detail)
    body = json.dumps({"message": printable(message), "detail": detail}, ensure_ascii=True, default=str)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


#: Control, format (bidirectional overrides, zero-width), surrogate and line/paragraph separator characters.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printable(text: str) -> str:
    """``text`` with control, format and surrogate characters written as ``\\uXXXX``.

    Messages quote client input (field names, ids, JSON excerpts); a raw control character or a lone
    surrogate in them would garble a terminal or a log line, or fail a strict client's JSON decoder.
    """
    if text.isascii() and text.isprintable():
        return text
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in _UNPRINTABLE else c for c in text)


#: Python's JSON error messages, said the way a client reads them.
_JSON_PROBLEMS = {
    "Expecting ':' delimiter": "expected ':' after a property name",
    "Expecting property name enclosed in double quotes": "expected a property name in double quotes",
    "Expecting value": "expected a value",
    "Unterminated string starting at": "unterminated string",
    "Invalid control character at": "unescaped control character in a string (write it as \\u00XX)",
    "Invalid \\escape": "invalid escape in a string",
    "Invalid \\uXXXX escape": "invalid \\uXXXX escape in a string",
    "Extra data": "more data after the JSON document",
}


def _json_problem(error: dict[str, Any], document: Any) -> tuple[str, dict[str, Any]]:
    """Where and what in a body that is not JSON: one message line and its structured detail."""
    position = error["loc"][-1] if isinstance(error["loc"][-1], int) else 0
    text = document if isinstance(document, str) else ""
    reason = str(error.get("ctx", {}).get("error", "not JSON"))
    if reason == "Expecting ',' delimiter":
        what = f"expected ',' or '{_closing_bracket(text, position)}'"
    else:
        what = _JSON_PROBLEMS.get(reason, reason[:1].lower() + reason[1:])
    if position >= len(text.rstrip()):
        what += " (the document ends early)"
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    excerpt = text[max(0, position - 20) : position + 20]
    message = f"body: invalid JSON at line {line}, column {column} (character {position}): {what}"
    if excerpt.strip():
        message += f", near '{printable(excerpt)}'"
    detail = {"loc": [], "msg": what, "type": "json_invalid", "line": line, "column": column, "position": position}
    return message, detail


def _closing_bracket(text: str, position: int) -> str:
    """The bracket that closes the object or array open at ``position`` of a JSON text."""
    stack: list[str] = []
    in_string = escaped = False
    for char in text[:position]:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else "}"


async def _validation_error(_request: Request, exc: Exception) -> Response:
    """422 with one readable line plus the structured errors (never echoing the input: it may hold NaN)."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if errors and errors[0].get("type") == "json_invalid":
        message, detail = _json_problem(errors[0], exc.body)
        return _error(422, message, [detail])
    details = []
    for error in errors:
        loc = [printable(str(part)) for part in error.get("loc", ()) if part != "body"]
        message = printable(str(error.get("msg", "invalid value")).removeprefix("Value error, "))
        if error.get("type") == "model_attributes_type" and not loc:
            message = "the body must be a JSON object, sent with Content-Type: application/json"
        detail = {"loc": loc, "msg": message, "type": error.get("type", "value_error")}
        if detail not in details:  # a body read by the route and by one of its dependencies is checked twice
            details.append(detail)
    summary = "; ".join(f"{'.'.join(d['loc']) or 'body'}: {d['msg']}" for d in details)
    return _error(422, summary or "invalid request", details)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.__cause__ is not None:
        # FastAPI could not even parse the body (invalid UTF-8, a number too long to convert, nesting too deep).
        cause = exc.__cause__
        reason = "nested too deeply" if isinstance(cause, RecursionError) else str(cause)[:200]
        return _error(422, f"body: not a JSON document that can be read ({type(cause).__name__}: {reason})")
    return _error(exc.status_code, str(exc.detail), exc.detail, headers=exc.headers)


async def _ledger_unavailable(request: Request, exc: Exception) -> Response:
    log.error("ledger unavailable on %s %s: %s", request.method, request.url.path, exc)
    return _error(503, "the decision log is unavailable; nothing was recorded, retry later")


async def _backlog_full(request: Request, exc: Exception) -> Response:
    # Not logged per request: the outbox logs when it starts and stops refusing, the relay why.
    assert isinstance(exc, BacklogFull)
    return _error(503, str(exc), headers={"Retry-After": str(exc.retry_after)})


async def _outcome_unknown(request: Request, exc: Exception) -> Response:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return _error(503, str(exc))
