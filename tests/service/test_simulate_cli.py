"""``banditgate simulate``: against a live server with --url, in process, and its refusals.

The command is mounted on a small app here, the way ``banditgate.service.cli`` mounts it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from banditgate.ledger.db import make_engine
from banditgate.ledger.models import Decision, Reward
from banditgate.service.commands import simulate as simulate_command
from banditgate.service.commands.exits import UsageExitGroup
from banditgate.service.settings import Settings
from banditgate.simulator import PRESETS
from banditgate.simulator import world as world_module
from tests.support.server import LiveServer

runner = CliRunner()


def _cli() -> typer.Typer:
    cli = typer.Typer(cls=UsageExitGroup)  # as banditgate's root app: usage errors exit 64

    @cli.callback()
    def main() -> None:
        """The banditgate command line, with the simulate command only."""

    cli.add_typer(simulate_command.app)
    return cli


app = _cli()


def _counts(database_url: str) -> tuple[int, int]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            decisions = connection.scalar(select(func.count()).select_from(Decision))
            rewards = connection.scalar(select(func.count()).select_from(Reward))
    finally:
        engine.dispose()
    return decisions or 0, rewards or 0


def test_simulate_against_a_live_server(settings: Settings) -> None:
    with LiveServer(settings.model_copy(update={"simulated_clock": True})) as live:
        options = ["--days", "2", "--decisions-per-day", "150", "--scenario", "covariate", "--seed", "4"]
        result = runner.invoke(app, ["simulate", *options, "--url", live.url, "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        decisions, rewards = _counts(settings.database_url)
    assert summary["target"] == live.url and summary["scenario"] == "covariate"
    assert summary["decisions"] == summary["transactions"] == decisions > 250
    assert summary["rewards_posted"] == {"authorisation": rewards} and summary["failed_requests"] == 0
    assert summary["rewards_unposted"]["chargeback"] > 0
    assert [day["day"] for day in summary["per_day"]] == [0, 1]
    assert summary["per_generation"][0]["generation"] == 0
    assert summary["decisions_per_second"] > 0


def test_simulate_in_process_prints_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    options = ["--days", "2", "--decisions-per-day", "100", "--start", "2026-01-05", "--flush-rewards"]
    options += ["--id-prefix", "cli-"]
    result = runner.invoke(app, ["simulate", *options, "--database-url", url], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    for text in ("simulation", url, "cli-", "per day", "2026-01-05", "auth rate", "regret", "chargeback"):
        assert text in result.stdout
    decisions, rewards = _counts(url)
    assert f"{decisions} of {decisions} transactions" in result.stdout
    assert decisions < rewards < 2 * decisions  # every authorisation, and a chargeback label per authorised one


def _decision_times(database_url: str) -> tuple[datetime, datetime]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            first, last = connection.execute(select(func.min(Decision.decided_at), func.max(Decision.decided_at))).one()
    finally:
        engine.dispose()
    return first.replace(tzinfo=first.tzinfo or UTC), last.replace(tzinfo=last.tzinfo or UTC)


def test_by_default_the_run_ends_at_the_present(tmp_path: Path) -> None:
    # commands that read the ledger as of now (retrain, evaluate, health, gate) must find the simulated traffic
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    options = ["--days", "3", "--decisions-per-day", "60", "--scenario", "covariate", "--json"]
    result = runner.invoke(app, ["simulate", *options, "--database-url", url])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = datetime.fromisoformat(summary["start"]), datetime.fromisoformat(summary["end"])
    assert end - start == timedelta(days=3) and end in (today, today - timedelta(days=1))  # a run across midnight
    first, last = _decision_times(url)
    assert start <= first < last < end <= datetime.now(UTC)
    # the labels due after the present are not posted: no chargeback arrives within 45 days
    assert summary["rewards_posted"] == {"authorisation": summary["decisions"]}
    assert summary["rewards_unposted"]["chargeback"] > 0


def test_start_runs_a_fixed_period_and_the_drift_schedule_counts_from_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    options = ["--days", "1", "--decisions-per-day", "40", "--start", "2026-03-02T00:00+01:00", "--json"]
    result = runner.invoke(app, ["simulate", *options, "--database-url", url])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["start"] == "2026-03-01T23:00:00+00:00" and summary["end"] == "2026-03-02T23:00:00+00:00"
    first, last = _decision_times(url)
    assert datetime(2026, 3, 1, 23, tzinfo=UTC) <= first < last < datetime(2026, 3, 2, 23, tzinfo=UTC)


def test_the_world_epoch_is_the_first_simulated_day(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    epochs = []
    world = world_module.PaymentWorld

    def recording_world(*args: object, **kwargs: object) -> object:
        made = world(*args, **kwargs)  # type: ignore[arg-type]
        epochs.append(made.epoch)
        return made

    monkeypatch.setattr(world_module, "PaymentWorld", recording_world)  # the command imports it when it runs
    options = ["--days", "1", "--decisions-per-day", "20", "--start", "2026-05-04", "--json"]
    result = runner.invoke(app, ["simulate", *options, "--database-url", f"sqlite:///{tmp_path / 'sim.db'}"])
    assert result.exit_code == 0, result.output
    assert epochs == [datetime(2026, 5, 4, tzinfo=UTC)]


def test_a_server_without_simulated_clock_is_refused_with_what_to_set(server: LiveServer) -> None:
    result = runner.invoke(app, ["simulate", "--days", "1", "--decisions-per-day", "50", "--url", server.url])
    assert result.exit_code == 1
    assert "BANDITGATE_SIMULATED_CLOCK=true" in result.stderr and server.url in result.stderr
    assert _counts(server.settings.database_url) == (0, 0)


def test_an_unknown_policy_aborts_with_the_services_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    options = ["--days", "1", "--decisions-per-day", "100", "--policy", "nope", "--max-failures", "3", "--json"]
    result = runner.invoke(app, ["simulate", *options, "--database-url", url])
    assert result.exit_code == 1
    assert "3 failed requests in a row" in result.stderr and "unknown policy 'nope'" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["errors"]["POST /v1/decisions 404"] >= 3 and summary["decisions"] == 0
    assert summary["aborted"] is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--days", "0"], "--days"),
        (["--decisions-per-day", "-5"], "--decisions-per-day"),
        (["--scenario", "apocalypse"], "apocalypse"),
        (["--id-prefix", "two words"], "visible ASCII"),
        (["--url", "http://127.0.0.1:9", "--database-url", "sqlite:///x.db"], "--database-url"),
        (["--start", "last monday"], "not an ISO 8601 date or time"),
        (["--start", "9999-01-01"], "outside the supported range"),
        # a run that ends at the present would post the late labels at arrival times in the future
        (["--flush-rewards"], "needs --start"),
    ],
)
def test_bad_options_exit_64_with_a_message(options: list[str], message: str) -> None:
    result = runner.invoke(app, ["simulate", *options], env={"COLUMNS": "200"})
    assert result.exit_code == 64, result.output
    assert message in result.output


def test_an_unreachable_server_exits_3() -> None:
    result = runner.invoke(app, ["simulate", "--days", "1", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 3 and "cannot reach http://127.0.0.1:9" in result.stderr


def test_help_describes_every_option() -> None:
    result = runner.invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for param in typer.main.get_command(simulate_command.app).params:
        assert param.help, f"{param.name} has no help text"


def test_the_scenario_choices_are_the_worlds_presets() -> None:
    assert set(get_args(simulate_command.ScenarioName)) == set(PRESETS)
