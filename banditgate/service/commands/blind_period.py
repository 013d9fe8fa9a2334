"""``banditgate blind-period``: project the sufficiency score forward through a period without new labels.

Usage::

    banditgate blind-period --scenario concept --days 60 --preset fraud --tau-r 0.15 --r0 0.1333
    banditgate blind-period --scenario mixed --days 180 --json > mixed.json
    banditgate blind-period --scenario covariate --magnitude 0.3 --onset 5 --plot covariate.png

Exit codes: 0 done; 1 the plot cannot be written; 64 bad options.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from banditgate.monitoring.blind_period import (
    DayProjection,
    Drift,
    first_day_at,
    project,
    projection_figure,
    scenario,
)
from banditgate.monitoring.sufficiency import Dimensions, Level, preset
from banditgate.service.commands.exits import EXIT_FAILED, EXIT_USAGE

ScenarioName = Literal["none", "covariate", "concept", "prior", "mixed"]
PresetName = Literal["default", "fraud", "credit"]

#: Longest projection the command accepts (ten years of days).
MAX_DAYS = 3650
#: Days shown in the table, besides the last one.
MILESTONES = (0, 7, 14, 30, 60, 90, 180, 365, 730)
_LEVEL_STYLES = {Level.SUFFICIENT: "green", Level.DEGRADED: "yellow", Level.INSUFFICIENT: "red"}


def blind_period_command(
    scenario_name: Annotated[
        ScenarioName, typer.Option("--scenario", help="drift during the blind period (the paper's magnitudes)")
    ] = "none",
    days: Annotated[int, typer.Option("--days", min=0, max=MAX_DAYS, help="days to project (0 .. D)")] = 90,
    preset_name: Annotated[
        PresetName, typer.Option("--preset", help="sufficiency parameters to start from")
    ] = "default",
    tau_r: Annotated[float | None, typer.Option("--tau-r", help="reliability gate threshold, in (0, 1]")] = None,
    tau_c: Annotated[float | None, typer.Option("--tau-c", help="completeness gate threshold, in (0, 1]")] = None,
    r0: Annotated[float, typer.Option("--r0", help="reliability on day 0")] = 1.0,
    c0: Annotated[float, typer.Option("--c0", help="completeness on day 0")] = 1.0,
    f0: Annotated[float, typer.Option("--f0", help="freshness on day 0")] = 1.0,
    p0: Annotated[float, typer.Option("--p0", help="representativeness on day 0")] = 1.0,
    magnitude: Annotated[
        float | None, typer.Option("--magnitude", help="drift magnitude in [0, 1], for every drift of the scenario")
    ] = None,
    onset: Annotated[
        float | None, typer.Option("--onset", help="drift onset day, for every drift of the scenario")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print one entry per day as JSON")] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", dir_okay=False, help="write a PNG of S and the dimensions")
    ] = None,
) -> None:
    """Project S, the gate factor and the four dimensions day by day while no new labels arrive: freshness
    decays, completeness thins out, and drift (if any) erodes reliability, representativeness and completeness.
    """
    overrides = {name: value for name, value in (("tau_r", tau_r), ("tau_c", tau_c)) if value is not None}
    try:
        params = preset(preset_name, **overrides)
        start = Dimensions(completeness=c0, freshness=f0, reliability=r0, representativeness=p0)
        drifts = scenario(scenario_name, magnitude=magnitude, onset=onset)
    except ValueError as exc:
        typer.secho(f"blind-period: {exc}", fg="red", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    projection = project(start, params, drifts, days)
    if plot is not None:
        projections = {scenario_name: projection}
        if drifts:
            projections = {"none": project(start, params, (), days), **projections}
        try:
            projection_figure(projections, params).savefig(plot, format="png", dpi=110)
        except OSError as exc:
            typer.secho(f"blind-period: cannot write {plot}: {exc}", fg="red", err=True)
            raise typer.Exit(EXIT_FAILED) from None
        typer.echo(f"wrote {plot}", err=True)
    if json_output:
        document = {
            "parameters": params.to_dict(),
            "scenario": {"name": scenario_name, "drifts": [drift.to_dict() for drift in drifts]},
            "start": start.to_dict(),
            "first_day_at": {level.value: first_day_at(projection, level) for level in Level},
            "days": [day.to_dict() for day in projection],
        }
        typer.echo(json.dumps(document, indent=2))
        return
    _print_table(projection, scenario_name, preset_name, drifts)


def _print_table(
    projection: list[DayProjection], scenario_name: str, preset_name: str, drifts: Sequence[Drift]
) -> None:
    last = projection[-1].day
    shown = sorted({day for day in MILESTONES if day <= last} | {last})
    described = " + ".join(f"{d.kind} {d.magnitude:g} from day {d.onset_day:g}" for d in drifts) or "no drift"
    table = Table(title=f"blind period: {scenario_name} ({described}), preset {preset_name}")
    for column in ("day", "S", "A", "C", "F", "R", "P"):
        table.add_column(column, justify="right")
    table.add_column("level")
    for day in (projection[i] for i in shown):
        values = (day.score, day.gate_factor, day.completeness, day.freshness, day.reliability, day.representativeness)
        level = f"[{_LEVEL_STYLES[day.level]}]{day.level.value}[/]"
        table.add_row(str(day.day), *(f"{value:.3f}" for value in values), level)
    console = Console()
    console.print(table)
    start = projection[0].level
    console.print(f"day 0: {start.value}")
    for level in Level:
        if level.exit_code > start.exit_code:
            first = first_day_at(projection, level)
            when = f"on day {first}" if first is not None else f"not by day {last}"
            console.print(f"falls to {level.value}: {when}")
