"""docker-compose.yml and the Dockerfile, checked by reading them (no container engine runs the tests).

Every setting the deployment sets is one the service reads, every command it runs parses with banditgate's own
command line, every port is published on loopback only, and the image carries LightGBM's run-time library.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import typer
import yaml

from banditgate.service.cli import app
from banditgate.service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
BANDITGATE = {name: service for name, service in SERVICES.items() if service.get("image") == "banditgate:local"}


def test_the_deployment_runs_every_part_the_scaled_out_service_needs() -> None:
    commands = {name: service["command"][:2] for name, service in BANDITGATE.items()}
    serving = [name for name, command in commands.items() if command == ["banditgate", "serve"]]
    assert len(serving) >= 2, "two serving instances"
    assert {tuple(c) for c in commands.values()} >= {
        ("banditgate", "joiner"),
        ("banditgate", "retrain"),
        ("banditgate", "gate"),
        ("banditgate", "db"),
    }
    assert {"postgres", "kafka"} <= set(SERVICES)
    assert "KAFKA_PROCESS_ROLES" in SERVICES["kafka"]["environment"], "Kafka in KRaft mode"
    for name in serving:
        environment = BANDITGATE[name]["environment"]
        assert environment["BANDITGATE_KAFKA_BOOTSTRAP_SERVERS"] and "healthcheck" in BANDITGATE[name]
    # each instance its own identity and its own durable outbox
    assert len({BANDITGATE[name]["environment"]["BANDITGATE_INSTANCE_ID"] for name in serving}) == len(serving)
    outboxes = [
        volume.split(":")[0]
        for name in serving
        for volume in BANDITGATE[name]["volumes"]
        if volume.endswith(":" + str(Path(BANDITGATE[name]["environment"]["BANDITGATE_OUTBOX_PATH"]).parent))
    ]
    assert len(set(outboxes)) == len(serving) and set(outboxes) <= set(COMPOSE["volumes"])


@pytest.mark.parametrize("name", sorted(BANDITGATE))
def test_every_setting_the_deployment_sets_is_read_by_the_service(name: str) -> None:
    fields = {field.upper() for field in Settings.model_fields}
    for variable in BANDITGATE[name]["environment"]:
        assert variable.startswith("BANDITGATE_") and variable.removeprefix("BANDITGATE_") in fields, variable
    assert BANDITGATE[name]["environment"]["BANDITGATE_API_KEY"].startswith("${BANDITGATE_API_KEY:?"), "no default key"


@pytest.mark.parametrize("name", sorted(BANDITGATE))
def test_every_command_the_deployment_runs_parses(name: str) -> None:
    program, *words = BANDITGATE[name]["command"]
    assert program == "banditgate"
    command: click.Command = typer.main.get_command(app)
    path = ["banditgate"]
    while isinstance(command, click.Group):
        word, *words = words
        found = command.get_command(click.Context(command), word)
        assert found is not None, f"{name}: no command {' '.join([*path, word])}"
        command, path = found, [*path, word]
    command.make_context(" ".join(path), list(words))  # raises a UsageError for an unknown or invalid option


def test_ports_are_published_on_loopback_only() -> None:
    published = [port for service in SERVICES.values() for port in service.get("ports", [])]
    assert published and all(str(port).startswith("127.0.0.1:") for port in published)


def test_the_image_carries_lightgbms_runtime_and_runs_as_its_own_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"apt-get install[^\n]*\blibgomp1\b", dockerfile), "LightGBM needs libgomp1"
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.M)
    assert users and users[-1] not in ("root", "0")
