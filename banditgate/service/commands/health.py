"""``banditgate health``: realised reward, calibration, score shift and ESS of each generation of a policy."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from banditgate.service.commands.retrain import parse_as_of


def health_command(
    policy: Annotated[str, typer.Option(help="policy")] = "default",
    as_of: Annotated[str | None, typer.Option(help="report as of this time (ISO 8601; default: now)")] = None,
    window_days: Annotated[float, typer.Option(min=0.01, help="decisions made in this many days before as-of")] = 90.0,
    reward_kind: Annotated[str, typer.Option(help="reward kind to judge generations on")] = "authorisation",
    json_output: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Health of every generation that served traffic: realised reward with its interval, the oracle's
    calibration on its own decisions, score shift from the previous generation, ESS per action, its lift over
    uniform random against a baseline common to all generations, and an oscillation flag (significant lift
    changes alternating in sign, or a significant decline of lift across learned generations)."""
    # Imported here, not at the top: every command line (even --help) imports this module.
    from banditgate.ledger.db import make_engine, make_sessionmaker
    from banditgate.ledger.migrate import upgrade
    from banditgate.ledger.registry import UnknownPolicy
    from banditgate.pipelines.health import HEALTH_COLUMNS, generation_health, health_rows, oscillation_summary
    from banditgate.service.commands.exits import load_settings

    settings = load_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)  # like the service at start-up: the models read columns newer ledgers have
    try:
        report = generation_health(
            make_sessionmaker(engine),
            settings.artifact_dir,
            policy,
            as_of=parse_as_of(as_of),
            reward_kind=reward_kind,
            window=timedelta(days=window_days),
        )
    except UnknownPolicy as exc:
        typer.secho(f"no report: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    if json_output:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"{policy}: generation health as of {report['as_of']} ({reward_kind})")
    for name in HEALTH_COLUMNS:
        table.add_column(name, justify="left" if name == "generation" else "right")
    for row in health_rows(report):
        table.add_row(*row)
    console = Console()
    console.print(table)
    summary = oscillation_summary(report["oscillation"])
    console.print(f"[bold red]{summary}[/]" if report["oscillation"]["flagged"] else summary, markup=True)
