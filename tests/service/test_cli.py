"""The ``banditgate`` command line, against a live server where it talks HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from banditgate.service.cli import app
from tests.conftest import API_KEY
from tests.support.server import LiveServer, free_port

runner = CliRunner()
DECISION = {"decision_id": "cli-1", "context": {"amount_eur": 5.0}, "actions": [{"id": "a"}, {"id": "b"}]}


@pytest.mark.parametrize(
    "command",
    [
        *([], ["serve"], ["decide"], ["reward"], ["policies"], ["policies", "set"], ["db", "upgrade"]),
        *(["simulate"], ["retrain"], ["evaluate"], ["health"], ["promote"], ["rollback"], ["generations"]),
        *(["gate"], ["blind-period"]),
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "banditgate.service.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("banditgate ")


def test_decide_and_reward_round_trip(server: LiveServer, tmp_path: Path) -> None:
    document = tmp_path / "decision.json"
    document.write_text(json.dumps(DECISION))
    decided = runner.invoke(app, ["decide", str(document), "--url", server.url])
    assert decided.exit_code == 0, decided.output
    assert json.loads(decided.stdout)["decision_id"] == "cli-1"
    rewarded = runner.invoke(app, ["reward", "-", "--url", server.url], input='{"decision_id": "cli-1", "reward": 1}')
    assert rewarded.exit_code == 0, rewarded.output
    assert json.loads(rewarded.stdout)["status"] == "recorded"


def test_errors_exit_non_zero_with_the_servers_message(server: LiveServer) -> None:
    refused = runner.invoke(app, ["reward", "-", "--url", server.url], input='{"decision_id": "ghost", "reward": 1}')
    assert refused.exit_code == 1 and "404" in refused.output and "ghost" in refused.output
    malformed = runner.invoke(app, ["decide", "-", "--url", server.url], input="{not json")
    assert malformed.exit_code == 64 and "not valid JSON" in malformed.output
    unreachable = runner.invoke(app, ["decide", "-", "--url", "http://127.0.0.1:9"], input=json.dumps(DECISION))
    assert unreachable.exit_code == 3 and "cannot reach" in unreachable.output


def test_policies_list_show_and_set(server: LiveServer) -> None:
    options = ["--exploration", "epsilon_greedy", "--param", "epsilon=0.2", "--floor", "0.02", "--reason", "new"]
    options += ["--feature", "bin=hashed", "--feature", 'merchant_id={"treatment": "hashed", "buckets": 8}']
    changed = runner.invoke(
        app, ["policies", "set", "retry", *options, "--actor", "alice", "--url", server.url, "--api-key", API_KEY]
    )
    assert changed.exit_code == 0, changed.output
    assert json.loads(changed.stdout)["exploration_params"] == {"epsilon": 0.2}
    assert json.loads(changed.stdout)["features"] == {
        "bin": {"treatment": "hashed", "buckets": 64},
        "merchant_id": {"treatment": "hashed", "buckets": 8},
    }
    listed = runner.invoke(app, ["policies", "list", "--url", server.url])
    assert listed.exit_code == 0 and "retry" in listed.stdout and "epsilon_greedy" in listed.stdout
    shown = runner.invoke(app, ["policies", "show", "retry", "--url", server.url])
    assert json.loads(shown.stdout)["generations"][0]["status"] == "deployed"
    no_key = runner.invoke(app, ["policies", "set", "retry", "--url", server.url], env={"BANDITGATE_API_KEY": ""})
    assert no_key.exit_code != 0


def test_db_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = runner.invoke(app, ["db", "upgrade"], env={"BANDITGATE_DATABASE_URL": url})
    assert result.exit_code == 0 and "schema up to date" in result.output
    assert (tmp_path / "fresh.db").exists()


def test_invalid_settings_are_reported(tmp_path: Path) -> None:
    result = runner.invoke(app, ["db", "upgrade"], env={"BANDITGATE_SQLITE_SYNCHRONOUS": "SOMETIMES"})
    assert result.exit_code == 64 and "sqlite_synchronous" in result.output


@pytest.mark.parametrize(
    "command",
    [
        *(["serve"], ["decide"], ["reward"], ["policies", "list"], ["policies", "set", "x"], ["db", "upgrade"]),
        *(["simulate"], ["retrain"], ["evaluate"], ["health"], ["promote"], ["rollback"], ["generations"]),
        *(["gate"], ["blind-period"]),
    ],
)
def test_a_usage_error_exits_64_in_every_command(command: list[str]) -> None:
    # Click's own status for a usage error is 2, which `banditgate gate` uses for INSUFFICIENT.
    result = runner.invoke(app, [*command, "--no-such-option"])
    assert result.exit_code == 64, result.output
    assert "No such option" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["gate", "--generation", "one"],
        ["gate"],  # --generation is required
        ["gate", "--generation", "1", "--what-if", "sideways"],
        ["gate", "--generation", "1", "--as-of", "yesterday"],
        ["no-such-command"],
        ["policies", "set", "x", "--param", "no-equals-sign", "--api-key", "k"],
    ],
)
def test_bad_arguments_exit_64_never_a_level(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 64, result.output


def test_a_gate_that_fails_exits_4_with_one_line_not_a_traceback(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    ledger.write_bytes(b"this is not a database" * 100)
    env = {**os.environ, "BANDITGATE_DATABASE_URL": f"sqlite:///{ledger}", "BANDITGATE_ARTIFACT_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "banditgate.service.cli", "gate", "--generation", "1"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("no gate evaluation: DatabaseError") and "not a database" in result.stderr


def test_blind_period_is_a_banditgate_command() -> None:
    args = ["blind-period", "--scenario", "none", "--days", "60", "--preset", "fraud", "--tau-r", "0.15"]
    result = runner.invoke(app, [*args, "--r0", "0.1333", "--json"])
    assert result.exit_code == 0, result.output
    assert round(json.loads(result.stdout)["days"][60]["S"], 3) == 0.418


def test_serve_with_two_workers_on_a_new_database(tmp_path: Path) -> None:
    """Both workers (each with its decision process) serve; neither races the other to create the schema."""
    port = free_port()
    env = {
        **os.environ,
        "BANDITGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}",
        "BANDITGATE_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        # the standby decision processes (test_startup.py tests them) would be two more processes importing the
        # models' libraries while the workers start
        "BANDITGATE_DECISION_PROCESS_STANDBY": "false",
    }
    command = [sys.executable, "-m", "banditgate.service.cli", "serve", "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 90
            while True:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the server did not become healthy"
                time.sleep(0.2)
            answers = [client.post("/v1/decisions", json={**DECISION, "decision_id": f"w-{i}"}) for i in range(40)]
        assert [a.status_code for a in answers] == [200] * 40
    finally:
        server.terminate()
        stderr = server.communicate(timeout=60)[1].decode()
    assert server.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr


@pytest.mark.parametrize("command", [["retrain"], ["evaluate", "--generation", "1"], ["health"], ["db", "upgrade"]])
def test_invalid_settings_are_a_usage_error_not_a_traceback(command: list[str], tmp_path: Path) -> None:
    env = {"BANDITGATE_API_KEY": "short", "BANDITGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}"}
    result = runner.invoke(app, command, env=env)
    assert result.exit_code == 64, result.output
    assert "invalid settings" in result.stderr and "BANDITGATE_API_KEY" in result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
