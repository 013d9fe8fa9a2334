"""The serving process's runtime: preparing the ledger before workers start."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect

from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.registry import list_policies
from banditgate.service.runtime import prepare_ledger
from banditgate.service.settings import PolicySettings, Settings


def test_prepare_ledger_migrates_and_creates_the_configured_policies_once(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'new.db'}",
        policies={
            "default": PolicySettings(),
            "retry": PolicySettings(exploration="epsilon_greedy", exploration_params={"epsilon": 0.1}),
        },
    )
    prepare_ledger(settings)
    prepare_ledger(settings)  # a second serving process finds everything in place
    engine = make_engine(settings.database_url)
    try:
        assert {"decisions", "rewards", "policies", "generations"} <= set(inspect(engine).get_table_names())
        with make_sessionmaker(engine)() as session:
            policies = {p.name: p for p in list_policies(session)}
    finally:
        engine.dispose()
    assert set(policies) == {"default", "retry"}
    assert policies["retry"].exploration == "epsilon_greedy" and policies["retry"].revision == 1
