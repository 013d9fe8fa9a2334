"""What every command that talks to a running service shares: its options and one request helper."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer

from banditgate.service.commands.exits import EXIT_FAILED, EXIT_UNREACHABLE

DEFAULT_URL = "http://127.0.0.1:8000"
UrlOption = Annotated[str, typer.Option("--url", envvar="BANDITGATE_URL", help="base URL of the running service")]
ApiKeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="BANDITGATE_API_KEY", help="admin API key", show_default=False)
]

#: A refusal's structured detail longer than this is not printed whole: standard error is for people.
DETAIL_LIMIT = 2_000


def request(
    method: str,
    url: str,
    path: str,
    api_key: str | None = None,
    actor: str | None = None,
    on_refusal: Callable[[Any], None] | None = None,
    **kwargs: Any,
) -> Any:
    """Send one request; return its JSON body, or exit (1: refused, with the server's message; 3: unreachable).

    A refusal's structured detail (a JSON object) is printed under it when short; ``on_refusal`` is given the
    refusal's whole body to say more, or to keep it, before the exit.
    """
    import httpx  # here, not at the top: every command line (even --help) imports this module

    headers = {"X-API-Key": api_key} if api_key else {}
    if actor:
        headers["X-Actor"] = actor
    try:
        response = httpx.request(method, url.rstrip("/") + path, headers=headers, timeout=30.0, **kwargs)
    except httpx.HTTPError as exc:
        typer.secho(f"cannot reach {url}: {exc}", fg="red", err=True)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text}
    if response.is_error:
        message = body.get("message", body) if isinstance(body, dict) else body
        typer.secho(f"HTTP {response.status_code}: {message}", fg="red", err=True)
        if on_refusal is not None:
            on_refusal(body)
        elif isinstance(body, dict) and isinstance(body.get("detail"), dict):
            detail = json.dumps(body["detail"], indent=2)
            typer.echo(detail if len(detail) <= DETAIL_LIMIT else f"(a detail of {len(detail):,} characters)", err=True)
        raise typer.Exit(EXIT_FAILED)
    return body


def print_json(body: Any) -> None:
    typer.echo(json.dumps(body, indent=2, sort_keys=False))
