"""``/ui``: the operator dashboard, server-rendered from the ledger (read-only and open, like the other reads).

Promote and rollback buttons call the admin API from the page's script with the key the operator types in:
the key is sent as ``X-API-Key`` with that request only, and never reaches these routes or any storage.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session

from banditgate import __version__
from banditgate.ledger import registry
from banditgate.ledger.activity import recent_activity
from banditgate.ledger.gate_evaluations import latest_gate_levels
from banditgate.service.dashboard import activity_json, policy_page
from banditgate.service.deps import get_session
from banditgate.service.schemas import PolicyName

if TYPE_CHECKING:
    from jinja2 import Environment

router = APIRouter(prefix="/ui", tags=["dashboard"], include_in_schema=False)

#: Scripts and styles come from this server only; nothing inline, no frames, no form posts elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}


def static_files() -> StaticFiles:
    """The dashboard's script, styles and the charting library (uPlot, MIT), shipped inside the package."""
    return StaticFiles(directory=str(files("banditgate.service") / "static"))


@cache
def _templates() -> Environment:
    # Imported on the first page, not at start-up: most processes serving decisions never render one.
    from jinja2 import Environment, PackageLoader

    # Autoescape everything: names, reasons and reports come from requests and files.
    return Environment(loader=PackageLoader("banditgate.service", "templates"), autoescape=True)


def _page(template: str, **context: object) -> HTMLResponse:
    html = _templates().get_template(template).render(version=__version__, **context)
    return HTMLResponse(html, headers=HEADERS)


@router.get("", response_class=HTMLResponse)
def index(session: Session = Depends(get_session)) -> HTMLResponse:
    """Every policy, its deployed generation and the latest gate verdict of its generations."""
    policies = registry.list_policies(session)
    levels = {p.name: latest_gate_levels(session, p.name) for p in policies}
    return _page("index.html.j2", policies=policies, levels=levels)


@router.get("/policies/{name}", response_class=HTMLResponse)
def policy(
    name: Annotated[PolicyName, Path()],
    generation: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="whose gate to show")] = None,
    session: Session = Depends(get_session),
) -> HTMLResponse:
    """A policy's lineage, OPE summaries, gate, recent activity, and the promote and rollback forms."""
    try:
        page = policy_page(session, name, generation)
    except registry.UnknownPolicy as exc:
        raise HTTPException(404, str(exc)) from None
    return _page("policy.html.j2", page=page)


@router.get("/policies/{name}/activity")
def activity(name: Annotated[PolicyName, Path()], session: Session = Depends(get_session)) -> JSONResponse:
    """Decision and reward rates, action mix and exploration share of the policy's most recent decisions."""
    try:
        registry.get_policy(session, name)
    except registry.UnknownPolicy as exc:
        raise HTTPException(404, str(exc)) from None
    return JSONResponse(activity_json(recent_activity(session, name)), headers=HEADERS)
