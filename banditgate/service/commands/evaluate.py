"""``banditgate evaluate``: off-policy report of a generation, as JSON and HTML."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from banditgate.service.commands.retrain import SHOWN_ESTIMATORS, parse_as_of


def evaluate_command(
    policy: Annotated[str, typer.Option(help="policy")] = "default",
    generation: Annotated[int, typer.Option(min=1, help="generation to evaluate (a candidate, typically)")] = 1,
    as_of: Annotated[str | None, typer.Option(help="evaluate as of this time (ISO 8601; default: now)")] = None,
    window_days: Annotated[float, typer.Option(min=0.01, help="at most this many days of logs after training")] = 14.0,
    output: Annotated[Path, typer.Option(help="folder for the JSON and HTML reports")] = Path("reports"),
    json_output: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Evaluate a generation off-policy against the deployed one and uniform random, on matured decisions
    logged after its training window (it never saw them); writes JSON and HTML reports with plots."""
    # Imported here, not at the top: every command line (even --help) imports this module.
    from banditgate.ledger.db import make_engine, make_sessionmaker
    from banditgate.ledger.migrate import upgrade
    from banditgate.ledger.registry import UnknownPolicy
    from banditgate.pipelines.evaluate import NothingToEvaluate, evaluate, render_html
    from banditgate.service.commands.exits import load_settings

    settings = load_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)  # like the service at start-up: the models read columns newer ledgers have
    try:
        report = evaluate(
            make_sessionmaker(engine),
            settings.artifact_dir,
            policy,
            generation,
            as_of=parse_as_of(as_of),
            window=timedelta(days=window_days),
        )
    except (UnknownPolicy, LookupError, NothingToEvaluate) as exc:
        typer.secho(f"not evaluated: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    output.mkdir(parents=True, exist_ok=True)
    stem = output / f"{policy}-generation-{generation}-evaluation"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    stem.with_suffix(".html").write_text(render_html(report))
    if json_output:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(
        title=f"{policy} generation {generation}: {report['n']:,} decisions (logged {report['logged_reward']:.4f})"
    )
    table.add_column("policy")
    for name in SHOWN_ESTIMATORS:
        table.add_column(f"{name} [95% CI]", justify="right")
    for name, entry in report["policies"].items():
        e = entry["estimates"]
        table.add_row(
            name, *(f"{e[k]['value']:.4f} [{e[k]['ci_low']:.4f}, {e[k]['ci_high']:.4f}]" for k in SHOWN_ESTIMATORS)
        )
    console = Console()
    console.print(table)
    console.print(f"reports: {stem.with_suffix('.json')} and {stem.with_suffix('.html')}")
