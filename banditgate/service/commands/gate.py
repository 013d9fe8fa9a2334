"""``banditgate gate``: how sufficient the evidence behind a generation is, why, and when it will be."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from banditgate.monitoring.blind_period import SCENARIOS
from banditgate.pipelines.schedule import parse_interval, run_every
from banditgate.service.commands.exits import EXIT_CANNOT_EVALUATE, EXIT_USAGE
from banditgate.service.commands.retrain import parse_as_of

log = logging.getLogger(__name__)

#: ``--generation candidate``: the policy's newest candidate, looked up at each run.
CANDIDATE = "candidate"

if TYPE_CHECKING:
    from banditgate.monitoring.gate import GateOptions, GateResult
    from banditgate.service.settings import Settings


def gate_command(
    policy: Annotated[str, typer.Option(help="policy")] = "default",
    generation: Annotated[
        str, typer.Option(help="generation to judge: its number, or 'candidate' for the newest candidate")
    ] = ...,  # type: ignore[assignment]
    as_of: Annotated[str | None, typer.Option(help="judge as of this time (ISO 8601; default: now)")] = None,
    window_days: Annotated[
        float | None, typer.Option(min=0.01, help="current window in days (default: the policy's gate settings)")
    ] = None,
    what_if: Annotated[
        str | None, typer.Option(help=f"also project S forward under a blind-period scenario: {', '.join(SCENARIOS)}")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    html: Annotated[
        Path | None, typer.Option(help="write the HTML report (with the evidently drift report) here")
    ] = None,
    store: Annotated[
        bool,
        typer.Option(
            help="keep the evaluation in the ledger (a promotion relies on one as of now with the policy's gate "
            "options: not one with --as-of or --window-days)"
        ),
    ] = True,
    every: Annotated[
        str | None,
        typer.Option(
            help="judge on a loop, e.g. 6h, storing each evaluation (default: once); with 'candidate', "
            "whichever candidate is newest at each run"
        ),
    ] = None,
) -> None:
    """Judge the evidence behind a generation: S, its four dimensions with intervals, the gate factor A, the
    level, every proxy indicator with its status, and what would make it sufficient.

    Exit status: 0 SUFFICIENT, 1 DEGRADED, 2 INSUFFICIENT (also when the window holds too little evidence to
    judge), 4 when it cannot be evaluated (unknown policy or generation, unreadable model, unreachable
    database, any error while evaluating: one line on standard error says why), 64 usage error (bad option,
    invalid settings). With --every it runs until stopped, one summary line per evaluation.
    """
    if what_if is not None and what_if not in SCENARIOS:
        typer.secho(f"--what-if must be one of {', '.join(SCENARIOS)}, got {what_if!r}", fg="red", err=True)
        raise typer.Exit(EXIT_USAGE)
    if not (generation.isdigit() or generation == CANDIDATE):
        typer.secho(f"--generation must be a number or {CANDIDATE!r}, got {generation!r}", fg="red", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        interval = None if every is None else parse_interval(every)
    except ValueError as exc:
        typer.secho(f"--every: {exc}", fg="red", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    when = parse_as_of(as_of)
    # Imported here, not at the top: every command line (even --help) imports this module.
    from pydantic import ValidationError

    from banditgate.service.settings import Settings

    try:
        settings = Settings()
        changes = {} if window_days is None else {"window_days": window_days}
        options = settings.gate_for(policy).options(**changes)
    except (ValidationError, ValueError) as exc:
        typer.secho(f"invalid settings or options: {exc}", fg="red", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if interval is not None:
        # Like retrain --every: the schedule's own messages (no candidate yet, a failed run) go to the log.
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

        def once() -> None:
            result = _evaluate(settings, policy, generation, when, options, what_if, store, drift_report=False)
            if result is None:
                log.info("%s: no candidate generation to judge", policy)
            else:
                typer.echo(result.report["summary"])

        run_every(interval, once)
        return
    try:
        result = _evaluate(settings, policy, generation, when, options, what_if, store, drift_report=html is not None)
        if result is None:
            raise LookupError(f"policy {policy!r} has no candidate generation")
        if html is not None:
            from banditgate.monitoring.report import write_gate_report

            write_gate_report(result, html)
            typer.echo(f"wrote {html}", err=True)
    except Exception as exc:
        # Whatever fails (unknown policy, unreadable model, the database, a bug) cannot exit 1 or 2: those
        # are levels, and a script would read a crash as DEGRADED.
        first_line = (str(exc).strip().splitlines() or [""])[0]
        typer.secho(f"no gate evaluation: {type(exc).__name__}: {first_line}", fg="red", err=True)
        raise typer.Exit(EXIT_CANNOT_EVALUATE) from None
    if store and (as_of is not None or options != settings.gate_for(policy).options()):
        typer.echo(
            f"stored as evaluation {result.report['evaluation_id']}, for reading only: a promotion relies on an "
            "evaluation as of now with the policy's gate options (no --as-of, no --window-days)",
            err=True,
        )
    if json_output:
        typer.echo(json.dumps(result.report, indent=2, default=str))
    else:
        _print(result)
    raise typer.Exit(result.report["exit_code"])


def _evaluate(
    settings: Settings,
    policy: str,
    generation: str,
    as_of: Any,
    options: GateOptions,
    what_if: str | None,
    store: bool,
    drift_report: bool = True,
) -> GateResult | None:
    """Evaluate the gate on the configured ledger, and store the evaluation if asked; None when ``generation``
    is ``candidate`` and the policy has none. ``drift_report`` keeps evidently's report of the drift tests, for
    ``--html``."""
    from banditgate.ledger.db import make_engine, make_sessionmaker
    from banditgate.ledger.migrate import upgrade
    from banditgate.ledger.registry import newest_candidate
    from banditgate.service.gate_worker import compute_gate

    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)  # like the service at start-up: evaluations are stored in a table newer ledgers have
        sessions = make_sessionmaker(engine)
        if generation == CANDIDATE:
            with sessions() as session:
                number = newest_candidate(session, policy)
            if number is None:
                return None
        else:
            number = int(generation)
        return compute_gate(
            sessions,
            settings.artifact_dir,
            policy,
            number,
            options=options,
            as_of=as_of,
            what_if=what_if,
            store=store,
            drift_report=drift_report,
        )
    finally:
        engine.dispose()


def _print(result: GateResult) -> None:
    report = result.report
    console = Console()
    console.print(f"[bold]{report['summary']}[/]")
    console.print(
        f"as of {report['as_of']}; current window {report['windows']['current']['decisions']:,} decisions "
        f"({report['windows']['current']['sampled']:,} sampled), trained until {report['trained_until']}"
    )
    table = Table(title="dimensions")
    for column in ("dimension", "value", "95% interval", "n", "note"):
        table.add_column(column, justify="left" if column in ("dimension", "note") else "right")
    for name, m in report["dimensions"].items():
        table.add_row(
            name, f"{m['value']:.3f}", "[{:.3f}, {:.3f}]".format(*m["interval"]), f"{m['n']:,}", _note(m["detail"])
        )
    console.print(table)
    console.print(f"A = {report['A']:.3f}, S = {report['S']:.3f}: [bold]{report['level']}[/]")
    for requirement in report["requirements"]:
        console.print(f"  {requirement['message']}")
    console.print(f"label latency: {report['label_latency']['explanation']}")
    proxies = Table(title=f"proxy indicators (S_proxy {report['S_proxy']:.3f}, {report['level_proxy']})")
    for column in ("proxy", "category", "statistic", "P", "status", "covers"):
        proxies.add_column(column, justify="right" if column in ("statistic", "P") else "left")
    for p in report["proxies"]:
        statistic = "-" if p["statistic"] is None else f"{p['statistic']:.4f}"
        normalised = "-" if p["normalised"] is None else f"{p['normalised']:.3f}"
        status = p["status"] if p["status"] != "unavailable" else f"unavailable: {p['detail'].get('reason', '')}"
        proxies.add_row(p["name"], p["category"], statistic, normalised, status, ", ".join(p["covers"]))
    console.print(proxies)
    weak = [s for s in report["segments"] if s["counted"] and s.get("level") != "SUFFICIENT"]
    skipped = sum(1 for s in report["segments"] if not s["counted"])
    console.print(
        f"segments: {len(report['segments'])} ({skipped} below their minimum size, not counted); "
        f"{len(weak)} counted segments not SUFFICIENT"
    )
    for segment in sorted(weak, key=lambda s: s["S"])[:10]:
        console.print(f"  {segment['segment']}: S = {segment['S']:.3f} ({segment['level']}), {segment['decisions']:,}")
    for alert in report["alerts"]:
        console.print(f"[bold red]alert[/]: {alert['message']}")
    for limit in report["limits"]:
        console.print(f"[dim]{limit}[/]")
    if "what_if" in report:
        days = report["what_if"]["days"]
        milestones = [d for d in days if d["day"] in (0, 7, 14, 30, 60, 90)]
        console.print(
            f"what if {report['what_if']['scenario']}: "
            + ", ".join(f"day {d['day']} S {d['S']:.3f} ({d['level']})" for d in milestones)
        )


def _note(detail: dict[str, Any]) -> str:
    if "reason" in detail:
        return str(detail["reason"])
    return ", ".join(f"{k} {v}" for k, v in detail.items() if isinstance(v, str | int) and k != "method")[:60]
