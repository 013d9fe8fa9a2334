"""``banditgate simulate``: run synthetic payment traffic through the service's HTTP API on a simulated clock.

In-process by default: the service runs inside the command, on ``--database-url`` (default: the configured
ledger, ``sqlite:///./banditgate.db``), with the simulated clock on. With ``--url`` the traffic goes over the
network to a running server, which must run with ``BANDITGATE_SIMULATED_CLOCK=true``.

By default the run ends at the present: its ``--days`` whole UTC days end at the last midnight, so the commands
that read the ledger "as of now" (``retrain``, ``evaluate``, ``health``, ``gate``) find its traffic. Labels that
arrive after the last day (every chargeback label, 45 days or more after its payment) are not posted: they
would arrive in the future. ``--start`` runs a fixed period instead (reproducible, and the only way to
``--flush-rewards``, which posts every label at its own arrival time).

Usage::

    banditgate simulate --days 30 --decisions-per-day 2000 --scenario concept --seed 1
    banditgate simulate --days 10 --start 2026-01-05 --url http://127.0.0.1:8000 --flush-rewards --json > run.json

Exit codes: 0 done without a failed request; 1 some requests failed, the run was aborted, or the server refuses
simulated time; 3 the service cannot be reached or started; 64 bad options or settings.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from banditgate.service.commands.exits import EXIT_USAGE

# The service, the simulator (pandas, SciPy) and the database client are imported where they are used: every
# command line (even --help) imports this module.
if TYPE_CHECKING:
    import httpx

    from banditgate.service.settings import Settings
    from banditgate.simulator.driver import SimulationSummary, Tally

    Simulation = Callable[[httpx.AsyncClient], Awaitable[SimulationSummary]]

app = typer.Typer()

#: The drift presets of :data:`banditgate.simulator.drift.PRESETS`.
ScenarioName = Literal["none", "covariate", "concept", "prior", "mixed"]


class _Unreachable(Exception):
    """The target service cannot be reached (``--url``) or started (in-process)."""


def _id_prefix(value: str | None) -> str | None:
    from banditgate.simulator.driver import check_id_prefix

    try:
        return None if value is None else check_id_prefix(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _start(value: str | None) -> datetime | None:
    """``--start``: an ISO 8601 date or time, in UTC unless it names a time zone."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"not an ISO 8601 date or time: {value!r} (e.g. 2026-01-05 or 2026-01-05T00:00Z)", param_hint="--start"
        ) from None
    from banditgate.ledger.types import check_time  # SQLAlchemy: not for every command line's start

    try:
        return check_time(when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC))
    except (ValueError, OverflowError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--start") from None


@app.command()
def simulate(
    days: Annotated[int, typer.Option(min=1, help="simulated days to run")] = 7,
    decisions_per_day: Annotated[
        int, typer.Option(min=1, help="average transactions per simulated day (weekdays and hours vary)")
    ] = 1000,
    scenario: Annotated[
        ScenarioName, typer.Option(help="drift scenario of the payment world, ramping in from its onset day")
    ] = "none",
    seed: Annotated[int, typer.Option(min=0, help="traffic seed: the same seed gives the same transactions")] = 0,
    world_seed: Annotated[
        int, typer.Option(min=0, help="seed of the world's structure (BINs, merchants, issuers)")
    ] = 0,
    start: Annotated[
        str | None,
        typer.Option(
            help="simulated time of the first day, ISO 8601, UTC unless it names a time zone (e.g. 2026-01-05); "
            "the drift schedule counts from it. Default: --days days before today's 00:00 UTC, so that the run ends "
            "at the present and labels due later (every chargeback) are not posted yet",
            show_default=False,
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            help="base URL of a running service, which must run with BANDITGATE_SIMULATED_CLOCK=true "
            "(default: run the service in this process)",
            show_default=False,
        ),
    ] = None,
    policy: Annotated[
        str | None, typer.Option(help="policy to ask (default: the service's default policy)", show_default=False)
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="ledger of the in-process service (default: the configured database_url, "
            "sqlite:///./banditgate.db unless BANDITGATE_DATABASE_URL says otherwise)",
            show_default=False,
        ),
    ] = None,
    flush_rewards: Annotated[
        bool,
        typer.Option(
            "--flush-rewards/--no-flush-rewards",
            help="at the end, also post the rewards not yet observed, each at its own arrival time (fast-forward "
            "past the last chargeback, up to 180 days after the last day); needs --start, since a run that ends at "
            "the present would post them in the future. Default: leave late labels unobserved, as at a real horizon",
        ),
    ] = False,
    id_prefix: Annotated[
        str | None,
        typer.Option(
            callback=_id_prefix,
            help="prefix of the decision ids (default: sim<seed>-<random>-, unique per run); a fixed prefix on a "
            "fresh ledger reproduces every decision",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=1024, help="most requests in flight at once (over --url, more than ~16 is slower)")
    ] = 16,
    max_failures: Annotated[int, typer.Option(min=1, help="abort after this many failed requests in a row")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON instead of tables")] = False,
) -> None:
    """Run a simulated payment world against the service: decisions, delayed rewards, drift, on simulated time.

    By default the run ends at the present (its last day ends at today's 00:00 UTC), so that retrain, evaluate,
    health and gate, which read the ledger as of now, find it; labels due after that (every chargeback) are not
    posted. --start runs a fixed period instead.
    """
    if url is not None and database_url is not None:
        raise typer.BadParameter(
            "only for the in-process service: a --url server uses its own database", param_hint="--database-url"
        )
    from banditgate.simulator.clock import start_ending_at_present
    from banditgate.simulator.driver import SimulatedClockRefused, SimulationError, run_simulation
    from banditgate.simulator.world import PaymentWorld

    first_day = _start(start)
    if flush_rewards and first_day is None:
        raise typer.BadParameter(
            "needs --start: the run ends at the present by default, and the labels still to come would be posted "
            "at arrival times in the future",
            param_hint="--flush-rewards",
        )
    if first_day is None:
        first_day = start_ending_at_present(days)
    settings = _settings(database_url) if url is None else None
    target = url if settings is None else _redacted(settings.database_url)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = progress.add_task(f"day 1/{days}", total=days * decisions_per_day)

    async def day_done(day: int, _day_end: datetime) -> None:
        if day + 1 < days:
            progress.update(task, description=f"day {day + 2}/{days}")
        elif flush_rewards:
            progress.update(task, description="posting the late rewards")

    simulation = functools.partial(
        run_simulation,
        world=PaymentWorld(scenario, seed=world_seed, epoch=first_day),
        start=first_day,
        days=days,
        decisions_per_day=decisions_per_day,
        seed=seed,
        policy=policy,
        id_prefix=id_prefix,
        concurrency=concurrency,
        flush_rewards=flush_rewards,
        max_consecutive_failures=max_failures,
        on_day_end=day_done,
        on_progress=lambda done, expected: progress.update(task, completed=done, total=expected),
    )
    try:
        with progress:
            if settings is not None:
                summary = asyncio.run(_in_process(settings, simulation))
            else:
                summary = asyncio.run(_remote(target, concurrency, simulation))
    except _Unreachable as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(3) from None
    except SimulatedClockRefused as exc:
        typer.secho(f"{target}: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    except SimulationError as exc:
        if exc.summary is not None:
            _report(exc.summary, target, as_json)
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    _report(summary, target, as_json)
    if summary.failed_requests:
        typer.secho(f"{summary.failed_requests:,} requests failed (see the errors above)", fg="red", err=True)
        raise typer.Exit(1)


async def _in_process(settings: Settings, simulation: Simulation) -> SimulationSummary:
    """Start the service on ``settings`` in this event loop and run ``simulation`` through its ASGI app."""
    from sqlalchemy.exc import SQLAlchemyError

    from banditgate.service.app import create_app
    from banditgate.simulator.driver import in_process_client

    try:
        async with in_process_client(create_app(settings)) as client:
            return await simulation(client)
    except (SQLAlchemyError, OSError) as exc:
        raise _Unreachable(
            f"cannot run the service on {_redacted(settings.database_url)}: {type(exc).__name__}: {exc}"
        ) from exc


async def _remote(url: str, concurrency: int, simulation: Simulation) -> SimulationSummary:
    """Check that the server at ``url`` answers ``/healthz``, then run ``simulation`` against it."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:
        try:
            health = await client.get("/healthz")
        except httpx.HTTPError as exc:
            raise _Unreachable(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
        if health.status_code != 200:
            raise _Unreachable(f"{url} is not ready: HTTP {health.status_code}: {health.text[:300]}")
        return await simulation(client)


def _settings(database_url: str | None) -> Settings:
    """The configured settings with the simulated clock on (and ``database_url`` when given); exit 64 if invalid."""
    from pydantic import ValidationError

    from banditgate.service.settings import Settings

    overrides: dict[str, Any] = {"simulated_clock": True}
    if database_url is not None:
        overrides["database_url"] = database_url
    try:
        return Settings(**overrides)
    except (ValidationError, ValueError) as exc:
        typer.secho(f"invalid settings: {exc}", fg="red", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _redacted(database_url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return database_url


def _report(summary: SimulationSummary, target: str, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"target": target, **summary.to_dict()}, indent=2))
    else:
        render_summary(summary, target, Console())


def render_summary(summary: SimulationSummary, target: str, console: Console) -> None:
    """Print ``summary`` as tables: the run, the value of the logged policy per day and per generation, errors.

    Parameters
    ----------
    summary
        What :func:`~banditgate.simulator.driver.run_simulation` returned.
    target
        What the simulation ran against (a URL, or the in-process service's database URL).
    console
        Where to print.
    """
    run = Table(title="simulation", show_header=False, title_justify="left", box=box.SIMPLE)
    run.add_column(style="bold")
    run.add_column()
    run.add_row("target", target)
    run.add_row("scenario", f"{summary.scenario}, {summary.days} days x ~{summary.decisions_per_day:,}/day")
    run.add_row("simulated time", f"{summary.start:%Y-%m-%d %H:%M} to {summary.end:%Y-%m-%d %H:%M} UTC")
    run.add_row("seed / id prefix", f"{summary.seed} / {summary.id_prefix}")
    run.add_row("decisions", f"{summary.decisions:,} of {summary.transactions:,} transactions")
    run.add_row("generations served", ", ".join(map(str, sorted(summary.per_generation))) or "none")
    run.add_row("rewards posted", _counts(summary.rewards_posted) or "none")
    if summary.unposted:
        run.add_row("not yet observed", f"{_counts(summary.unposted)} (late labels, left unposted)")
    run.add_row("failed requests", f"{summary.failed_requests:,}", style="red" if summary.failed_requests else None)
    run.add_row("wall time", f"{summary.wall_seconds:.1f} s, {summary.decisions_per_second:,.0f} decisions/s")
    if summary.aborted:
        run.add_row("aborted", summary.aborted, style="red")
    console.print(run)
    several = len(summary.per_generation) > 1
    console.print(_value_table("day", summary, summary.per_day, with_generations=several))
    if several:
        console.print(_value_table("generation", summary, summary.per_generation))
    console.print(
        "auth rate: realised authorisation rate; logged, best, uniform: true expected authorisation of the "
        "logged probabilities, of the best eligible action and of a uniform choice; regret = best - logged",
        style="dim",
    )
    if summary.errors:
        errors = Table(title="errors", title_justify="left", title_style="red", box=box.SIMPLE)
        errors.add_column("request")
        errors.add_column("count", justify="right")
        errors.add_column("first message")
        for key, count in sorted(summary.errors.items()):
            errors.add_row(key, f"{count:,}", summary.error_examples.get(key, ""))
        console.print(errors)


def _value_table(
    key: str, summary: SimulationSummary, tallies: dict[int, Tally], with_generations: bool = False
) -> Table:
    """One row per day (or generation), then the whole run."""
    per_day = key == "day"
    table = Table(title=f"per {key}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(key, justify="right")
    if per_day:
        table.add_column("date", no_wrap=True)
    if with_generations:
        table.add_column("gen")
    for column in ("decisions", "auth rate", "logged", "best", "uniform", "regret"):
        table.add_column(column, justify="right")

    def add(label: str, tally: Tally, date: str = "") -> None:
        values = tally.to_dict()
        cells = [label, date] if per_day else [label]
        if with_generations:
            cells.append(",".join(map(str, values["generations"])))
        cells.append(f"{values['decisions']:,}")
        cells += [
            _rate(values[name])
            for name in ("authorisation_rate", "expected_reward", "best_reward", "uniform_reward", "regret")
        ]
        table.add_row(*cells)

    for label, tally in sorted(tallies.items()):
        add(str(label), tally, (summary.start + timedelta(days=label)).date().isoformat())
    table.add_section()
    add("all", summary.overall)
    return table


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count:,}" for kind, count in sorted(counts.items()) if count)
