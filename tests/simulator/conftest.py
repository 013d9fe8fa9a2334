"""Shared worlds and traffic samples (built once per session: the tests only read them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from banditgate.simulator import PaymentWorld, TrafficBatch


@pytest.fixture(scope="session")
def world() -> PaymentWorld:
    return PaymentWorld()


@pytest.fixture(scope="session")
def week(world: PaymentWorld) -> list[TrafficBatch]:
    """A week of traffic at 3,000 decisions a day, no drift."""
    return list(world.traffic_batches(days=7, decisions_per_day=3000, seed=11))


@pytest.fixture(scope="session")
def week_frame(week: list[TrafficBatch]) -> pd.DataFrame:
    return pd.concat([batch.to_frame() for batch in week], ignore_index=True)


@pytest.fixture(scope="session")
def week_eligible(week: list[TrafficBatch]) -> np.ndarray:
    return np.vstack([batch.eligible for batch in week])


@pytest.fixture(scope="session")
def week_p(week: list[TrafficBatch]) -> np.ndarray:
    return np.vstack([batch.p_authorisation for batch in week])
