"""``banditgate blind-period``: the paper's numbers, JSON, table, plot and refusals.

The command is mounted on a small app here, the way ``banditgate.service.cli`` mounts it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from banditgate.service.commands.blind_period import blind_period_command
from banditgate.service.commands.exits import UsageExitGroup

runner = CliRunner()
PAPER = ["--preset", "fraud", "--tau-r", "0.15", "--r0", "0.1333"]


def _cli() -> typer.Typer:
    cli = typer.Typer(cls=UsageExitGroup)  # as banditgate's root app: usage errors exit 64

    @cli.callback()
    def main() -> None:
        """The banditgate command line, with the blind-period command only."""

    cli.command("blind-period")(blind_period_command)
    return cli


app = _cli()


def _json(*arguments: str) -> dict:
    result = runner.invoke(app, ["blind-period", *arguments, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(("scenario", "expected"), [("none", 0.418), ("concept", 0.242)])
def test_the_papers_day_60(scenario: str, expected: float) -> None:
    report = _json("--scenario", scenario, "--days", "60", *PAPER)
    assert len(report["days"]) == 61 and [day["day"] for day in report["days"]] == list(range(61))
    assert round(report["days"][60]["S"], 3) == expected
    assert round(report["days"][0]["S"], 3) == 0.658 and report["days"][0]["level"] == "DEGRADED"


def test_json_document() -> None:
    report = _json("--scenario", "concept", "--days", "60", *PAPER)
    assert list(report) == ["parameters", "scenario", "start", "first_day_at", "days"]
    assert report["parameters"]["tau_r"] == 0.15 and report["parameters"]["tau_c"] == 0.6
    assert report["parameters"]["weights"] == {
        "completeness": 0.2,
        "freshness": 0.3,
        "reliability": 0.3,
        "representativeness": 0.2,
    }
    assert report["scenario"] == {"name": "concept", "drifts": [{"kind": "concept", "magnitude": 0.8, "onset_day": 10}]}
    assert report["start"] == {"completeness": 1.0, "freshness": 1.0, "reliability": 0.1333, "representativeness": 1.0}
    assert report["first_day_at"] == {"SUFFICIENT": 0, "DEGRADED": 0, "INSUFFICIENT": 21}
    day = report["days"][60]
    assert set(day) == {"day", "S", "A", "completeness", "freshness", "reliability", "representativeness", "level"}
    assert day["completeness"] == pytest.approx(0.7) and day["level"] == "INSUFFICIENT"


def test_defaults_start_from_full_evidence_over_90_days() -> None:
    report = _json()
    assert report["scenario"] == {"name": "none", "drifts": []}
    assert report["parameters"]["weights"]["freshness"] == 0.25 and len(report["days"]) == 91
    assert report["days"][0]["S"] == 1.0 and report["days"][0]["level"] == "SUFFICIENT"
    assert report["first_day_at"] == {"SUFFICIENT": 0, "DEGRADED": 44, "INSUFFICIENT": None}


def test_starting_point_and_drift_overrides() -> None:
    report = _json(
        "--scenario", "mixed", "--days", "5", "--c0", "0.9", "--f0", "0.8", "--r0", "0.7", "--p0", "0.6",
        "--tau-c", "0.5", "--magnitude", "0.3", "--onset", "2", "--preset", "credit",
    )  # fmt: skip
    assert report["start"] == {"completeness": 0.9, "freshness": 0.8, "reliability": 0.7, "representativeness": 0.6}
    assert report["parameters"]["tau_c"] == 0.5 and report["parameters"]["freshness_lambda"] == 0.005
    assert [drift["magnitude"] for drift in report["scenario"]["drifts"]] == [0.3, 0.3]
    assert [drift["onset_day"] for drift in report["scenario"]["drifts"]] == [2, 2]
    first = report["days"][0]
    assert {name: first[name] for name in report["start"]} == report["start"]  # drift starts on day 2


def test_table() -> None:
    result = runner.invoke(app, ["blind-period", "--scenario", "concept", "--days", "60", *PAPER])
    assert result.exit_code == 0, result.output
    assert "concept 0.8 from day 10" in result.stdout
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if line.count("│") > 2}
    assert set(rows) == {"0", "7", "14", "30", "60"}
    assert "0.242" in rows["60"] and "INSUFFICIENT" in rows["60"] and "0.658" in rows["0"]
    assert "day 0: DEGRADED" in result.stdout and "falls to INSUFFICIENT: on day 21" in result.stdout


def test_table_when_a_level_is_not_reached() -> None:
    result = runner.invoke(app, ["blind-period", "--days", "20"])
    assert result.exit_code == 0, result.output
    assert "day 0: SUFFICIENT" in result.stdout
    assert (
        "falls to DEGRADED: not by day 20" in result.stdout and "falls to INSUFFICIENT: not by day 20" in result.stdout
    )


def test_plot(tmp_path: Path) -> None:
    path = tmp_path / "concept.png"
    result = runner.invoke(app, ["blind-period", "--scenario", "concept", "--plot", str(path), "--json", *PAPER])
    assert result.exit_code == 0, result.output
    assert path.read_bytes().startswith(b"\x89PNG")
    assert len(json.loads(result.stdout)["days"]) == 91  # the JSON on stdout stays clean
    assert f"wrote {path}" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--scenario", "seasonal"], "'seasonal' is not one of"),
        (["--preset", "aml"], "'aml' is not one of"),
        (["--days", "-1"], "--days"),
        (["--tau-r", "0"], "tau_r must be a finite number in (0.0, 1.0], got 0.0"),
        (["--tau-r", "1.5"], "tau_r must be a finite number in (0.0, 1.0], got 1.5"),
        (["--tau-c", "-0.2"], "tau_c must be a finite number in (0.0, 1.0]"),
        (["--r0", "1.2"], "reliability must be a finite number in [0.0, 1.0], got 1.2"),
        (["--magnitude", "0.5"], "scenario 'none' has no drift"),
        (
            ["--scenario", "covariate", "--magnitude", "2"],
            "drift magnitude must be a finite number in [0.0, 1.0], got 2.0",
        ),
        (
            ["--scenario", "covariate", "--onset", "-3"],
            "drift onset day must be a finite number in [0.0, inf], got -3.0",
        ),
    ],
)
def test_bad_input_is_refused(arguments: list[str], message: str) -> None:
    result = runner.invoke(app, ["blind-period", *arguments])
    assert result.exit_code == 64
    assert message in " ".join(result.output.replace("│", " ").split())


def test_an_unwritable_plot_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "plot.png"
    result = runner.invoke(app, ["blind-period", "--plot", str(path)])
    assert result.exit_code == 1 and f"cannot write {path}" in result.stderr
