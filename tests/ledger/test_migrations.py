from __future__ import annotations

from datetime import datetime

import pytest
from alembic import command as alembic_command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.orm import Session

from banditgate.ledger.db import make_engine
from banditgate.ledger.migrate import alembic_config, upgrade
from banditgate.ledger.models import Base, Decision
from banditgate.ledger.records import DEFAULT_SEGMENT_KEYS


def test_migrations_create_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(engine: Engine) -> None:
    upgrade(engine)
    assert {"decisions", "rewards", "policies", "generations", "audit_events"} <= set(inspect(engine).get_table_names())


def test_sqlite_runs_in_wal_mode(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_upgrading_to_0003_copies_the_default_segment_values_out_of_logged_contexts(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0002")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO policies (name, description, exploration, exploration_params, floor, oracle,"
                    " oracle_params, deployed_generation, revision, created_at, updated_at) VALUES ('default', '',"
                    " 'uniform', '{}', 0, 'lightgbm', '{}', 0, 1, :at, :at)"
                ),
                {"at": datetime(2026, 1, 1)},
            )
            for decision_id, context in (("fr", '{"issuer_country": "FR", "amount": 3}'), ("none", '{"amount": 1}')):
                connection.execute(
                    text(
                        "INSERT INTO decisions (decision_id, policy, generation, context, actions, probabilities,"
                        " action_id, propensity, exploration, exploration_params, draw, request_sha256, decided_at,"
                        " logged_at) VALUES (:id, 'default', 0, :context, '[]', '[]', 'a', 1, 'uniform', '{}', 0.5,"
                        " 'x', :at, :at)"
                    ),
                    {"id": decision_id, "context": context, "at": datetime(2026, 1, 1)},
                )
        upgrade(engine)
        with Session(engine) as session:
            values = dict(session.execute(select(Decision.decision_id, Decision.segment_values)).all())
        assert DEFAULT_SEGMENT_KEYS == ("issuer_country",)
        assert values == {"fr": {"issuer_country": "FR"}, "none": {"issuer_country": None}}
        index = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("decisions")}
        assert index["ix_decisions_window"] == ["policy", "decided_at", "decision_id", "action_id", "segment_values"]
    finally:
        engine.dispose()


def test_0003_downgrades_and_upgrades_again(engine: Engine) -> None:
    with engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        alembic_command.downgrade(config, "0002")
    columns = {c["name"] for c in inspect(engine).get_columns("decisions")}
    assert "segment_values" not in columns and "decision_id" in columns
    upgrade(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
