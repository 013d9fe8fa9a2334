"""``banditgate joiner``'s own checks, before it reaches a broker."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from banditgate.service.cli import app
from banditgate.service.commands.exits import EXIT_UNREACHABLE, EXIT_USAGE
from tests.support.kafka import free_port


@pytest.fixture
def env(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANDITGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.delenv("BANDITGATE_KAFKA_BOOTSTRAP_SERVERS", raising=False)


def test_without_a_broker_setting_it_says_which_one(env: None) -> None:
    result = CliRunner().invoke(app, ["joiner", "--metrics-port", "0"])
    assert result.exit_code == EXIT_USAGE
    assert "BANDITGATE_KAFKA_BOOTSTRAP_SERVERS" in result.output


@pytest.mark.parametrize("value", ["rewards:2", "rewards:x:3", ":1:2", "rewards:1:-3"])
def test_a_malformed_skip_offset_is_a_usage_error(env: None, value: str) -> None:
    result = CliRunner().invoke(app, ["joiner", "--skip-offset", value])
    assert result.exit_code == EXIT_USAGE
    assert "TOPIC:PARTITION:OFFSET" in result.output


@pytest.mark.slow  # the client gives up on bootstrapping after about 30 s
def test_an_unreachable_broker_exits_3(env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANDITGATE_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    result = CliRunner().invoke(app, ["joiner", "--metrics-port", "0"])
    assert result.exit_code == EXIT_UNREACHABLE, result.output
    assert "cannot reach a Kafka broker" in result.output
