"""``banditgate demo``: the whole loop on simulated payment traffic, written up as a report.

On a fresh SQLite ledger inside ``--out`` (default ``./banditgate-demo``), the service runs in this process on a
simulated clock and serves ``--days`` days of simulated payment traffic through its HTTP API. Every simulated
day the candidate trained the day before is judged by the sufficiency gate and promoted if the evidence is
SUFFICIENT, and a new candidate is retrained and evaluated off-policy; a drift of the world starts half-way.
``--out`` gets ``report.html`` (self-contained: charts inline, nothing fetched) and ``report.json``. See
:mod:`banditgate.service.demo` for the loop.

Usage::

    banditgate demo
    banditgate demo --days 90 --seed 3 --out /tmp/demo

Exit codes: 0 done; 1 the run failed (requests failed, or an error while running); 64 bad options, or ``--out``
holds something else than a previous demo.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from banditgate.service.commands.exits import EXIT_FAILED, EXIT_USAGE

if TYPE_CHECKING:
    from banditgate.service.demo import DemoReport

#: Bounds of ``--days``: two weeks fill the first training window; four months keep the run short.
MIN_DAYS, MAX_DAYS = 14, 120
DEFAULT_DECISIONS_PER_DAY = 200


def demo_command(
    days: Annotated[
        int, typer.Option(min=MIN_DAYS, max=MAX_DAYS, help="simulated days (a drift starts half-way)")
    ] = 60,
    seed: Annotated[
        int, typer.Option(min=0, help="seed of the traffic and the world: the same seed, the same report")
    ] = 0,
    out: Annotated[
        Path,
        typer.Option(
            file_okay=False,
            help="folder of the demo's ledger and reports (created; a previous demo's is replaced, anything else "
            "is refused)",
        ),
    ] = Path("banditgate-demo"),
    decisions_per_day: Annotated[
        int, typer.Option(min=50, max=20_000, help="average transactions per simulated day")
    ] = DEFAULT_DECISIONS_PER_DAY,
) -> None:
    """Simulate payment traffic through the service, retrain every day, judge and promote; write a report.

    Runs on embedded defaults in --out (a fresh SQLite ledger, no server to start): each simulated day the
    candidate trained the day before is judged by the sufficiency gate and promoted when its evidence is
    SUFFICIENT, and a new candidate is retrained and evaluated off-policy. A concept drift starts half-way.
    Writes OUT/report.html and OUT/report.json and prints a summary.
    """
    from banditgate.service.demo import DemoOptions, run_demo
    from banditgate.service.demo_report import write_reports

    _prepare(out)
    options = DemoOptions(folder=out, days=days, seed=seed, decisions_per_day=decisions_per_day)
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task(f"day 1/{days}: traffic", total=days * decisions_per_day)

    def stage(day: int, text: str) -> None:
        progress.update(task, description=f"day {day + 1}/{days}: {text}")

    def traffic(done: int, expected: int) -> None:
        progress.update(task, completed=done, total=expected)

    try:
        with progress:
            report = run_demo(options, on_progress=traffic, on_stage=stage)
    except Exception as exc:
        typer.secho(f"the demo failed: {type(exc).__name__}: {exc}", fg="red", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    html, json_path = write_reports(report, out)
    print_summary(report, Console())
    typer.echo(f"wrote {html} and {json_path}")
    if report.failed_requests:
        typer.secho(f"{report.failed_requests:,} requests failed", fg="red", err=True)
        raise typer.Exit(EXIT_FAILED)


def _prepare(out: Path) -> None:
    """Create ``out``, or empty it of a previous demo's files; refuse a folder holding anything else."""
    from banditgate.service.demo import DEMO_FILES, DEMO_MARKER

    if out.exists():
        if not out.is_dir():
            typer.secho(f"--out {out}: not a folder", fg="red", err=True)
            raise typer.Exit(EXIT_USAGE)
        present = sorted(p.name for p in out.iterdir())
        others = [name for name in present if name not in DEMO_FILES]
        if present and DEMO_MARKER not in present:
            typer.secho(
                f"--out {out} is not empty and not a demo's folder (no {DEMO_MARKER}): choose another folder, or "
                "empty this one",
                fg="red",
                err=True,
            )
            raise typer.Exit(EXIT_USAGE)
        if others:
            typer.secho(
                f"--out {out} holds files that are not a demo's ({', '.join(others[:5])}"
                f"{', ...' if len(others) > 5 else ''}): choose another folder, or empty this one",
                fg="red",
                err=True,
            )
            raise typer.Exit(EXIT_USAGE)
        for name in DEMO_FILES:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / DEMO_MARKER).write_text("written by banditgate demo: the command replaces this folder's content\n")
    except OSError as exc:
        typer.secho(f"--out {out}: cannot create it: {exc}", fg="red", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def print_summary(report: DemoReport, console: Console) -> None:
    """The demo's outcome as tables: the run, then every generation that was judged."""
    run = Table(title="banditgate demo", show_header=False, title_justify="left", box=box.SIMPLE)
    run.add_column(style="bold")
    run.add_column()
    run.add_row("simulated", f"{report.days} days from {report.start[:10]}, ~{report.decisions_per_day:,} payments/day")
    run.add_row(
        "drift", f"{report.scenario} from day {report.drift_onset_day:g}, full after {report.drift_ramp_days:g} days"
    )
    run.add_row("decisions", f"{report.decisions:,}")
    run.add_row("rewards posted", ", ".join(f"{k} {v:,}" for k, v in report.rewards_posted.items()))
    promoted = [p for p in report.promotions if p.allowed]
    run.add_row(
        "gate verdicts",
        f"{len(report.promotions)}: {len(promoted)} promoted, {len(report.promotions) - len(promoted)} refused",
    )
    deployed = [g.number for g in report.generations if g.status == "deployed"]
    run.add_row("deployed at the end", f"generation {deployed[0]}" if deployed else "-")
    run.add_row(
        "time", f"{report.wall_seconds:.0f} s wall, {report.cpu_seconds:.0f} s CPU, load {report.load_average[0]:.1f}"
    )
    console.print(run)
    table = Table(title="generations that served", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("gen", "decisions", "expected auth", "best", "uniform", "DR estimate", "true value", "status"):
        table.add_column(column, justify="left" if column == "status" else "right")
    for g in report.generations:
        if not g.decisions_served:
            continue
        dr = g.estimates.get("dr")
        table.add_row(
            str(g.number),
            f"{g.decisions_served:,}",
            _rate(g.served_reward),
            _rate(g.served_best),
            _rate(g.served_uniform),
            _rate(dr.value if dr else None),
            _rate(g.true_value),
            g.status,
        )
    console.print(table)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
