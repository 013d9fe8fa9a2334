"""``banditgate retrain``: build the next policy generation from the matured log, directly on the database."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from banditgate.pipelines.schedule import parse_interval, run_every

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from banditgate.pipelines.retrain import RetrainResult
    from banditgate.service.settings import Settings

SHOWN_ESTIMATORS = ("snips", "dr", "switch_dr")


def parse_as_of(value: str | None) -> datetime | None:
    """An ``--as-of`` option: ISO 8601, UTC when no timezone is given, in the supported range (1970 to 2200)."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2026-11-25T00:00:00Z)") from None
    from banditgate.ledger.types import check_time  # SQLAlchemy: not for every command line's start

    try:
        return check_time(when if when.tzinfo else when.replace(tzinfo=UTC))
    except (ValueError, OverflowError) as exc:
        raise typer.BadParameter(f"--as-of {value!r}: {exc}") from None


def retrain_command(
    policy: Annotated[str, typer.Option(help="policy to retrain")] = "default",
    window_days: Annotated[
        float, typer.Option(min=0.01, help="short-term memory: days of decisions to learn from")
    ] = 14.0,
    as_of: Annotated[str | None, typer.Option(help="retrain as of this time (ISO 8601; default: now)")] = None,
    reward_kind: Annotated[str, typer.Option(help="reward kind to learn")] = "authorisation",
    pool_generations: Annotated[
        bool, typer.Option(help="learn from every generation's logs in the window, or only the deployed one's")
    ] = True,
    importance_weighting: Annotated[bool, typer.Option(help="weight rows by 1 / logged propensity")] = False,
    weight_clip: Annotated[float, typer.Option(min=1.0, help="cap on importance weights")] = 20.0,
    prior_correction: Annotated[
        bool, typer.Option(help="balance classes in training and correct the odds back (rare outcomes)")
    ] = False,
    calibration: Annotated[
        str,
        typer.Option(
            help="recalibrate the oracle's scores on the held-out rows: none | isotonic (a monotone map from score "
            "to observed reward, stored with the artifact; LightGBM oracle, rewards in [0, 1])"
        ),
    ] = "none",
    floor_schedule: Annotated[
        str,
        typer.Option(
            help="probability floor: evidence (the smallest that keeps --ess-target of evidence for uniform random "
            "over a window, at least the policy's floor) | policy (the policy's floor)"
        ),
    ] = "evidence",
    ess_target: Annotated[
        float, typer.Option(min=1.0, help="effective sample size the evidence floor keeps over a window")
    ] = 1000.0,
    gamma_schedule: Annotated[
        str,
        typer.Option(
            help="SquareCB gamma: ope (the candidate with the best lower bound on held-out lift over uniform) | "
            "fixed (the policy's) | sqrt | budget"
        ),
    ] = "ope",
    gamma_z: Annotated[
        float, typer.Option(min=0.0, help="with --gamma-schedule ope: standard errors subtracted from each lift")
    ] = 0.0,
    min_ess: Annotated[
        float, typer.Option(min=0.0, help="with --gamma-schedule ope: least effective sample size of a candidate")
    ] = 100.0,
    max_exploration: Annotated[
        float,
        typer.Option(
            min=0.001, max=1.0, help="with --gamma-schedule ope: most mean probability off the oracle's best action"
        ),
    ] = 0.2,
    gamma0: Annotated[float, typer.Option(min=0.0, help="gamma = gamma0 * sqrt(n) with --gamma-schedule sqrt")] = 1.0,
    exploration_budget: Annotated[
        float, typer.Option(min=0.001, max=0.999, help="mean off-greedy probability with --gamma-schedule budget")
    ] = 0.1,
    trust_region: Annotated[
        float | None,
        typer.Option(
            help="cap on the mean total-variation distance to the deployed generation's action distribution on "
            "recent decisions, in (0, 1); lowers SquareCB's gamma until it holds (default: no cap)"
        ),
    ] = None,
    holdout: Annotated[float, typer.Option(min=0.01, max=0.99, help="most recent share held out for OPE")] = 0.2,
    every: Annotated[str | None, typer.Option(help="run on a loop, e.g. 24h (default: once)")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Train, evaluate (off-policy, on held-out matured logs) and register the next generation as a candidate.

    Reads BANDITGATE_DATABASE_URL and BANDITGATE_ARTIFACT_DIR like the service. Never deploys: promote the
    candidate with `banditgate promote` once its OPE report is convincing.
    """
    # Imported here, not at the top: every command line (even --help) imports this module.
    from banditgate.ledger.db import make_engine, make_sessionmaker
    from banditgate.ledger.migrate import upgrade
    from banditgate.ledger.registry import UnknownPolicy
    from banditgate.pipelines.retrain import NotEnoughData, RetrainOptions, retrain
    from banditgate.service.commands.exits import load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = RetrainOptions(
            window=timedelta(days=window_days),
            as_of=parse_as_of(as_of),
            reward_kind=reward_kind,
            pool_generations=pool_generations,
            importance_weighting=importance_weighting,
            weight_clip=weight_clip,
            prior_correction=prior_correction,
            calibration=calibration,  # type: ignore[arg-type]
            floor_schedule=floor_schedule,  # type: ignore[arg-type]
            ess_target=ess_target,
            gamma_schedule=gamma_schedule,  # type: ignore[arg-type]
            gamma_z=gamma_z,
            min_ess=min_ess,
            max_exploration=max_exploration,
            gamma0=gamma0,
            exploration_budget=exploration_budget,
            trust_region=trust_region,
            holdout_fraction=holdout,
        )
        interval = parse_interval(every) if every else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = load_settings()
    # A kind declared in the settings is learnt within its declared values; stored values outside are skipped.
    options = replace(options, reward_rule=settings.reward_kind_rules().get(reward_kind))
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    upgrade(engine)
    sessions = make_sessionmaker(engine)

    def once() -> None:
        console = Console(stderr=True)
        with Progress(
            TextColumn("reading matured decisions"),
            BarColumn(),
            TextColumn("{task.completed:,} rows"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=json_output,
        ) as bar:
            task = bar.add_task("read", total=None)
            result = retrain(sessions, settings.artifact_dir, policy, options, progress=lambda n: bar.advance(task, n))
        _report(result, json_output)
        _prepare_gate(sessions, settings, result)

    try:
        if interval is None:
            once()
        else:
            run_every(interval, once)
    except (NotEnoughData, UnknownPolicy, ValueError) as exc:
        typer.secho(f"not retrained: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


def _prepare_gate(sessions: sessionmaker[Session], settings: Settings, result: RetrainResult) -> None:
    """Sample and score the candidate's reference window for the gate now, so that its first evaluation (the
    one a reviewer waits for) costs what later ones do. A failure here leaves the candidate as it is."""
    from banditgate.monitoring.gate import prepare_reference

    generation = result.generation
    started = time.perf_counter()
    try:
        with sessions() as session:
            options = settings.gate_for(generation.policy).options()
            sampled = prepare_reference(
                session, settings.artifact_dir, generation.policy, generation.number, options=options
            )
    except Exception as exc:
        typer.secho(f"gate reference not prepared (the first gate evaluation will do it): {exc}", fg="yellow", err=True)
        return
    typer.echo(
        f"gate reference prepared: {sampled:,} decisions sampled and scored in {time.perf_counter() - started:.1f} s",
        err=True,
    )


def _print_exploration(console: Console, choice: dict[str, Any] | None) -> None:
    """How the generation's floor and gamma were chosen (``ope_report["exploration"]``)."""
    if choice is None:
        return
    floor = f"floor {choice['floor']:.4g} ({choice['floor_rule']}"
    if choice["floor_rule"] == "evidence":
        floor += (
            f": ESS {choice['ess_target']:,.0f} over {choice['decisions_in_window']:,} decisions of "
            f"{choice['mean_actions']:.1f} actions"
        )
    gamma = "" if choice["gamma"] is None else f", gamma {choice['gamma']:.4g} ({choice['gamma_rule']})"
    console.print(floor + ")" + gamma)
    if not choice["candidates"]:
        return
    table = Table(
        title=f"SquareCB gamma candidates on {choice['rows']:,} held-out decisions "
        f"(chosen: best lift - {choice['z']:g} x std error, ESS >= {choice['min_ess']:,.0f})"
    )
    for column in ("gamma", "lift over uniform (DR)", "std error", "lower bound", "ESS", "off-greedy mass"):
        table.add_column(column, justify="right")
    for c in choice["candidates"]:
        mark = "[bold]" if c["gamma"] == choice["gamma"] else ""
        table.add_row(
            f"{mark}{c['gamma']:,.0f}",
            f"{c['lift']:+.4f}",
            f"{c['lift_std_error']:.4f}",
            f"{c['lower_bound']:+.4f}",
            f"{c['ess']:,.0f}" + ("" if c["admissible"] else " (too few)"),
            f"{c['off_greedy_mass']:.3f}",
        )
    console.print(table)


#: Context keys shown by name in the importance line (the rest are summed).
SHOWN_KEYS = 8


def _print_importance(console: Console, importance: dict[str, Any] | None) -> None:
    """One line: the context keys the candidate relied on most, the action id and the action features."""
    if importance is None:
        return
    if importance["method"] is None:
        console.print(f"feature importance: none ({importance['reason']})")
        return
    ranked = list(importance["context"].items())
    parts = [f"{key} {share:.1%}" for key, share in ranked[:SHOWN_KEYS]]
    if len(ranked) > SHOWN_KEYS:
        parts.append(f"{len(ranked) - SHOWN_KEYS} other keys {sum(s for _, s in ranked[SHOWN_KEYS:]):.1%}")
    parts.append(f"action id {importance['action_id']:.1%}")
    if importance["action_features"]:
        parts.append(f"action features {sum(importance['action_features'].values()):.1%}")
    console.print(f"feature importance ({importance['method']}): " + ", ".join(parts), highlight=False)


def _report(result: RetrainResult, json_output: bool) -> None:
    generation = result.generation
    summary: dict[str, Any] = {
        "policy": generation.policy,
        "generation": generation.number,
        "parent": generation.parent,
        "status": generation.status,
        "artifact_sha256": generation.artifact_sha256,
        "exploration": generation.exploration,
        "exploration_params": generation.exploration_params,
        "row_counts": generation.row_counts,
        "seconds": round(result.seconds, 2),
        "ope_report": result.ope_report,
    }
    if json_output:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    console = Console()
    console.print(
        f"[bold]{generation.policy}[/bold]: candidate generation {generation.number} (parent {generation.parent}) "
        f"trained on {result.training_rows:,} matured decisions, evaluated on {result.ope_report['n']:,} held out "
        f"in {result.seconds:.1f} s"
    )
    table = Table(
        title=f"Off-policy estimates of the authorisation rate (logged: {result.ope_report['logged_reward']:.4f})"
    )
    table.add_column("policy")
    for name in SHOWN_ESTIMATORS:
        table.add_column(f"{name} [95% CI]", justify="right")
    table.add_column("ESS", justify="right")
    for name, entry in result.ope_report["policies"].items():
        estimates = entry["estimates"]
        cells = [
            f"{estimates[e]['value']:.4f} [{estimates[e]['ci_low']:.4f}, {estimates[e]['ci_high']:.4f}]"
            for e in SHOWN_ESTIMATORS
        ]
        table.add_row(name, *cells, f"{estimates['ips']['ess']:,.0f}")
    console.print(table)
    _print_exploration(console, result.ope_report.get("exploration"))
    _print_importance(console, result.ope_report.get("feature_importance"))
    calibration = result.ope_report.get("calibration")
    if calibration is not None and calibration["method"] != "none":
        console.print(
            f"calibration {calibration['method']}: {calibration['thresholds']:,} thresholds fitted on "
            f"{calibration['rows']:,} held-out decisions"
        )
    trust = generation.row_counts.get("trust_region")
    if trust is not None:
        console.print(
            f"trust region {trust['cap']}: mean TV to generation {generation.parent} on {trust['contexts']:,} recent "
            f"decisions {trust['tv_before']:.4f} at gamma {trust['gamma_before']:.4g}, {trust['tv_after']:.4f} at "
            f"gamma {trust['gamma']:.4g}"
            + ("" if trust["met"] else " [red](cap not met: smallest distance found)[/red]")
        )
    console.print(
        f"promote with: banditgate promote --policy {generation.policy} --generation {generation.number} --reason ..."
    )
