"""Traffic generation, reproducibility, the simulated clock and the pending-events queue."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from itertools import islice

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from banditgate.simulator import (
    PaymentWorld,
    PendingEvents,
    RewardEvent,
    SimulatedClock,
    traffic,
)

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def test_traffic_is_in_time_order_within_the_window(world: PaymentWorld) -> None:
    times = [t for t, _ in world.traffic(START, days=3, decisions_per_day=800, seed=1)]
    assert times == sorted(times)
    assert times[0] >= START and times[-1] < START + timedelta(days=3)
    assert all(t.tzinfo is not None for t in times[:10])


def test_about_n_decisions_per_day_with_weekday_seasonality(world: PaymentWorld) -> None:
    counts = [len(batch) for batch in world.traffic_batches(START, days=7, decisions_per_day=1000, seed=1)]
    assert sum(counts) == pytest.approx(7000, abs=10)
    assert counts[4] > counts[0]  # Friday > Monday
    assert min(counts) > 900 and max(counts) < 1100


def test_same_seed_same_traffic_and_outcomes() -> None:
    def run(seed: int) -> list:
        world = PaymentWorld("mixed")
        out = []
        for t, tx in islice(world.traffic(START, days=2, decisions_per_day=500, seed=seed), 700):
            outcome = tx.outcome(tx.eligible[-1])
            out.append((t, tx.id, tx.context, tx.eligible, outcome.events))
        return out

    first = run(4)
    assert run(4) == first
    other = run(5)
    assert [row[2] for row in other] != [row[2] for row in first]


def test_days_can_be_generated_alone(world: PaymentWorld) -> None:
    batches = list(world.traffic_batches(START, days=3, decisions_per_day=300, seed=9))
    alone = world.day_batch(START, day=2, decisions_per_day=300, seed=9)
    np.testing.assert_array_equal(alone.micros, batches[2].micros)
    np.testing.assert_array_equal(alone.p_authorisation, batches[2].p_authorisation)
    assert alone.ids == batches[2].ids
    assert alone.ids[0] == "sim9-d002-000000"


def test_ids_are_unique_and_prefixable(world: PaymentWorld) -> None:
    ids = [tx.id for _, tx in world.traffic(START, days=2, decisions_per_day=300, seed=1, id_prefix="run42-")]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "run42-d000-000000"


def test_module_level_traffic_uses_start_as_the_epoch() -> None:
    later = START + timedelta(days=200)

    def contexts(stream) -> list[dict]:
        return [tx.context for _, tx in islice(stream, 20)]

    first = contexts(traffic(later, days=1, decisions_per_day=200, seed=3, scenario="covariate"))
    assert contexts(PaymentWorld("covariate", epoch=later).traffic(later, 1, 200, 3)) == first
    assert contexts(PaymentWorld("covariate").traffic(later, 1, 200, 3)) != first  # drift in full swing


def test_bad_arguments_are_refused(world: PaymentWorld) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next(world.traffic(datetime(2026, 1, 1), days=1))
    with pytest.raises(ValueError, match="decisions_per_day"):
        world.day_batch(START, decisions_per_day=0)
    with pytest.raises(ValueError, match="non-negative"):
        world.day_batch(START, seed=-1)


def test_ninety_days_of_a_thousand_a_day_generate_in_seconds() -> None:
    world = PaymentWorld("mixed")
    began = time.perf_counter()
    count = sum(1 for _ in world.traffic(START, days=90, decisions_per_day=1000, seed=1))
    elapsed = time.perf_counter() - began
    assert count == pytest.approx(90_000, rel=0.01)
    assert elapsed < 10.0, f"{elapsed:.1f} s"


def test_clock_moves_forward_only() -> None:
    clock = SimulatedClock(START)
    assert clock.advance(timedelta(minutes=90)) == START + timedelta(minutes=90)
    assert clock.advance_to(START + timedelta(days=2)) == clock.now
    assert clock.days == 2.0
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance_to(START)
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulatedClock(datetime(2026, 1, 1))


@given(st.lists(st.floats(0.0, 1e7, allow_nan=False), max_size=60), st.floats(0.0, 1e7))
def test_pending_events_drain_in_time_order(delays: list[float], horizon: float) -> None:
    queue = PendingEvents()
    for i, seconds in enumerate(delays):
        delay = timedelta(seconds=seconds)
        queue.push(RewardEvent(f"d{i}", "authorisation", 1.0, delay, START + delay))
    now = START + timedelta(seconds=horizon)
    ready = queue.drain(now)
    assert [e.observed_at for e in ready] == sorted(e.observed_at for e in ready)
    assert all(e.observed_at <= now for e in ready)
    assert len(ready) + len(queue) == len(delays)
    assert queue.next_at() is None or queue.next_at() > now
    rest = queue.drain_all()
    assert not queue and all(e.observed_at > now for e in rest)


def test_a_driver_loop_releases_rewards_when_their_time_comes() -> None:
    world = PaymentWorld()
    clock, pending = SimulatedClock(START), PendingEvents()
    posted: list[tuple[datetime, RewardEvent]] = []
    decided: dict[str, datetime] = {}
    for t, tx in world.traffic(START, days=1, decisions_per_day=300, seed=2):
        clock.advance_to(t)
        posted.extend((clock.now, e) for e in pending.drain(clock.now))
        decided[tx.id] = t
        pending.extend(tx.outcome(tx.best_action()).events)
    clock.advance(timedelta(days=200))
    posted.extend((clock.now, e) for e in pending.drain(clock.now))
    assert not pending
    kinds = {e.kind for _, e in posted}
    assert kinds == {"authorisation", "chargeback"}
    for at, event in posted:
        assert event.observed_at <= at
        assert event.observed_at == decided[event.decision_id] + event.delay
