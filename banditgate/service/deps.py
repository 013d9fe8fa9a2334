"""Dependencies injected into routes with ``Depends``.

The trivial ones are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool,
and those thread hops (and the GIL contention they bring) cost more than the whole decision.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session

from banditgate.ledger.decision_log import DecisionLog
from banditgate.service.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def get_decision_log(runtime: Runtime = Depends(get_runtime)) -> DecisionLog:
    return runtime.decision_log


def get_session(runtime: Runtime = Depends(get_runtime)) -> Iterator[Session]:
    with runtime.sessions() as session:
        yield session


async def require_admin(
    runtime: Runtime = Depends(get_runtime),
    x_api_key: str | None = Header(default=None, description="admin API key"),
    x_actor: str | None = Header(default=None, max_length=128, description="who is making the change"),
) -> str:
    """Check the admin API key; return who is acting (``X-Actor``, or ``"api-key"``).

    401 without a key (an empty ``X-API-Key`` is no key), 403 with a wrong one or when the server has none: an
    unset or empty ``BANDITGATE_API_KEY`` closes the admin endpoints.
    """
    if not x_api_key:
        raise HTTPException(401, "admin endpoint: send the API key in the X-API-Key header")
    expected = runtime.settings.api_key
    if expected is None or not expected.get_secret_value():
        raise HTTPException(403, "admin endpoints are disabled: the server has no BANDITGATE_API_KEY")
    if not secrets.compare_digest(x_api_key.encode(), expected.get_secret_value().encode()):
        raise HTTPException(403, "wrong API key")
    return x_actor or "api-key"
