"""The ``banditgate`` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from banditgate import __version__
from banditgate.service.commands import generations as generation_commands
from banditgate.service.commands import simulate as simulate_commands
from banditgate.service.commands.blind_period import blind_period_command
from banditgate.service.commands.client import DEFAULT_URL, ApiKeyOption, UrlOption, print_json, request
from banditgate.service.commands.demo import demo_command
from banditgate.service.commands.evaluate import evaluate_command
from banditgate.service.commands.exits import EXIT_STATUS_HELP, EXIT_USAGE, UsageExitGroup, load_settings
from banditgate.service.commands.gate import gate_command
from banditgate.service.commands.health import health_command
from banditgate.service.commands.joiner import joiner_command
from banditgate.service.commands.retrain import retrain_command

# Every command line, even --help, and every worker of `banditgate serve --workers N` (which re-imports this
# module) imports what is imported here: the settings, the database and the models are imported where used.
if TYPE_CHECKING:
    pass

app = typer.Typer(
    name="banditgate",
    cls=UsageExitGroup,
    help="Contextual-bandit decision service for payment processing.",
    epilog=EXIT_STATUS_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
policies_app = typer.Typer(help="List, show and configure policies of a running service.", no_args_is_help=True)
db_app = typer.Typer(help="Ledger database maintenance.", no_args_is_help=True)
app.add_typer(policies_app, name="policies")
app.add_typer(db_app, name="db")
app.add_typer(generation_commands.app)
app.add_typer(simulate_commands.app)
app.command("retrain")(retrain_command)
app.command("evaluate")(evaluate_command)
app.command("health")(health_command)
app.command("blind-period")(blind_period_command)
app.command("gate")(gate_command)
app.command("demo")(demo_command)
app.command("joiner")(joiner_command)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", exists=True, dir_okay=False, help="TOML settings file (or BANDITGATE_CONFIG)"),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"banditgate {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Contextual-bandit decision service for payment processing."""


def _use_config(config: Path | None) -> None:
    if config is not None:
        os.environ["BANDITGATE_CONFIG"] = str(config)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
    config: ConfigOption = None,
) -> None:
    """Run the decision service (embedded SQLite by default: BANDITGATE_DATABASE_URL changes it)."""
    import uvicorn

    from banditgate.service.http_server import uvicorn_options
    from banditgate.service.runtime import prepare_ledger

    _use_config(config)
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if workers > 1 and settings.database_url.startswith("sqlite"):
        typer.secho(
            "note: several workers share one SQLite file; each has its own decision process and writer, and they "
            "take turns on the lock",
            fg="yellow",
            err=True,
        )
    prepare_ledger(settings)  # once, before the workers start: they would race to create a new database
    uvicorn.run(
        "banditgate.service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_worker_healthcheck=settings.worker_healthcheck_timeout_seconds,
        log_level=settings.log_level.lower(),
        access_log=False,
        **uvicorn_options(settings),
    )


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply the database migrations (the service also does this at start-up)."""
    from banditgate.ledger.db import make_engine
    from banditgate.ledger.migrate import upgrade

    _use_config(config)
    settings = load_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    typer.echo(f"schema up to date: {engine.url.render_as_string()}")


def _read_document(source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        typer.secho(f"cannot read {source}: {exc}", fg="red", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        typer.secho(f"{source} is not valid JSON: {exc}", fg="red", err=True)
        raise typer.Exit(EXIT_USAGE) from None


@app.command()
def decide(
    document: Annotated[str, typer.Argument(help="JSON decision request: a file, or - for standard input")] = "-",
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Send one decision request to a running service and print the decision."""
    print_json(request("POST", url, "/v1/decisions", json=_read_document(document)))


@app.command()
def reward(
    document: Annotated[str, typer.Argument(help="JSON reward: a file, or - for standard input")] = "-",
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Send one reward to a running service and print what was recorded."""
    print_json(request("POST", url, "/v1/rewards", json=_read_document(document)))


@policies_app.command("list")
def policies_list(url: UrlOption = DEFAULT_URL) -> None:
    """One line per policy: name, deployed generation, exploration rule, floor, oracle."""
    for policy in request("GET", url, "/v1/policies"):
        params = json.dumps(policy["exploration_params"], sort_keys=True)
        typer.echo(
            f"{policy['name']:<24} gen {policy['deployed_generation']:<4} {policy['exploration']} {params} "
            f"floor={policy['floor']} oracle={policy['oracle']}"
        )


@policies_app.command("show")
def policies_show(name: str, url: UrlOption = DEFAULT_URL) -> None:
    """A policy's configuration and generations, as JSON."""
    print_json(request("GET", url, f"/v1/policies/{name}"))


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            typer.secho(f"parameter {pair!r} is not KEY=VALUE", fg="red", err=True)
            raise typer.Exit(EXIT_USAGE)
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


@policies_app.command("set")
def policies_set(
    name: str,
    exploration: Annotated[
        str, typer.Option(help="uniform | epsilon_greedy | softmax | squarecb | greedy")
    ] = "squarecb",
    param: Annotated[list[str] | None, typer.Option("--param", help="exploration parameter KEY=VALUE")] = None,
    floor: Annotated[float, typer.Option(min=0.0, max=1.0, help="minimum probability of every action")] = 0.01,
    oracle: Annotated[str, typer.Option(help="lightgbm | sklearn | river")] = "lightgbm",
    oracle_param: Annotated[list[str] | None, typer.Option("--oracle-param", help="oracle parameter KEY=VALUE")] = None,
    feature: Annotated[
        list[str] | None,
        typer.Option(
            "--feature",
            help='how the oracle uses a context key, KEY=numeric|categorical|excluded|hashed or KEY=\'{"treatment": '
            '"hashed", "buckets": 128}\' (keys not named: automatic)',
        ),
    ] = None,
    description: Annotated[str, typer.Option(help="what the policy is for")] = "",
    reason: Annotated[str, typer.Option(help="why (kept in the audit trail)")] = "",
    actor: Annotated[str | None, typer.Option(envvar="USER", help="who is making the change")] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Create a policy or replace its configuration (admin: needs the API key)."""
    body = {
        "exploration": exploration,
        "exploration_params": _parse_params(param or []),
        "floor": floor,
        "oracle": oracle,
        "oracle_params": _parse_params(oracle_param or []),
        "features": _parse_params(feature or []),
        "description": description,
        "reason": reason,
    }
    if api_key is None:
        typer.secho("policies set needs the admin API key (--api-key or BANDITGATE_API_KEY)", fg="red", err=True)
        raise typer.Exit(EXIT_USAGE)
    print_json(request("PUT", url, f"/v1/policies/{name}", api_key=api_key, actor=actor, json=body))


if __name__ == "__main__":
    app()
