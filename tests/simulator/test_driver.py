"""The simulation driver: a payment world run through the service's HTTP API on a simulated clock.

In-process runs go through the real app on SQLite and PostgreSQL; the ordering, concurrency and error rules
are checked against a scripted transport that records every request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from banditgate.ledger.models import Decision, Reward
from banditgate.service.app import create_app
from banditgate.service.settings import Settings
from banditgate.simulator import PaymentWorld
from banditgate.simulator.driver import (
    TIME_HEADER,
    SimulatedClockRefused,
    SimulationSummary,
    TooManyFailures,
    in_process_client,
    run_simulation,
)

DAYS, PER_DAY, SEED, PREFIX = 3, 200, 5, "t5-"
MS = timedelta(milliseconds=1)


def _settings(database_url: str, tmp_path: Path, simulated_clock: bool = True) -> Settings:
    """Deciding in a decision process, as served by default, but without its standby: no decision process dies
    here, and starting one more process per app is seconds of CPU."""
    return Settings(
        database_url=database_url,
        artifact_dir=tmp_path / "artifacts",
        simulated_clock=simulated_clock,
        decision_process_standby=False,
    )


def _ledger(app: Any) -> tuple[dict[str, Decision], list[Reward]]:
    with app.state.runtime.sessions() as session:
        decisions = {row.decision_id: row for row in session.scalars(select(Decision))}
        rewards = list(session.scalars(select(Reward)))
    return decisions, rewards


def _run(app: Any, **options: Any) -> tuple[SimulationSummary, dict[str, Decision], list[Reward]]:
    """Run the concept-drift world on ``app`` in process; return the summary and the ledger before it stops."""

    async def main() -> tuple[SimulationSummary, dict[str, Decision], list[Reward]]:
        async with in_process_client(app) as client:
            summary = await run_simulation(client, PaymentWorld("concept"), **options)
            return summary, *_ledger(app)

    return asyncio.run(main())


def test_every_decision_and_matured_reward_is_logged_on_simulated_time(database_url: str, tmp_path: Path) -> None:
    app = create_app(_settings(database_url, tmp_path))
    calls: list[tuple[int, datetime, int, int]] = []

    async def on_day_end(day: int, day_end: datetime) -> None:
        decisions, rewards = _ledger(app)
        calls.append((day, day_end, len(decisions), sum(r.observed_at > day_end for r in rewards)))

    summary, decisions, rewards = _run(
        app, days=DAYS, decisions_per_day=PER_DAY, seed=SEED, id_prefix=PREFIX, on_day_end=on_day_end
    )

    world = PaymentWorld("concept")
    arrivals = {tx.id: t for t, tx in world.traffic(days=DAYS, decisions_per_day=PER_DAY, seed=SEED, id_prefix=PREFIX)}
    assert summary.errors == {} and summary.aborted is None
    assert summary.transactions == summary.decisions == len(decisions) == len(arrivals)
    for decision_id, t in arrivals.items():  # decided_at is the simulated arrival, to the millisecond
        assert timedelta(0) <= t - decisions[decision_id].decided_at < MS

    horizon = world.epoch + timedelta(days=DAYS)
    assert summary.end == horizon
    by_kind = {kind: [r for r in rewards if r.kind == kind] for kind in ("authorisation", "chargeback")}
    assert by_kind["chargeback"] == []  # 45 days at the earliest: not observed within 3 days
    assert summary.unposted["chargeback"] == summary.overall.authorised
    assert summary.rewards_posted == {"authorisation": len(by_kind["authorisation"])}
    assert len(by_kind["authorisation"]) + summary.unposted["authorisation"] == summary.decisions
    assert summary.unposted["authorisation"] <= 2  # only decisions in the last seconds of the horizon
    assert sum(r.value for r in by_kind["authorisation"]) <= summary.overall.authorised
    for reward in by_kind["authorisation"]:
        delay = reward.observed_at - decisions[reward.decision_id].decided_at
        assert timedelta(seconds=0.2) <= delay <= timedelta(seconds=5) + MS
        assert timedelta(0) <= reward.received_at - reward.observed_at < MS  # posted once observed, stamped then
        assert reward.observed_at <= horizon

    # The hook runs once a day, after the day's decisions are logged; nothing is posted ahead of the clock.
    ends = [world.epoch + timedelta(days=d + 1) for d in range(DAYS)]
    assert [(day, end) for day, end, _, _ in calls] == list(enumerate(ends))
    assert [n for _, _, n, _ in calls] == [sum(t < end for t in arrivals.values()) for end in ends]
    assert all(ahead == 0 for *_, ahead in calls)

    assert sorted(summary.per_day) == [0, 1, 2]
    assert sum(t.decisions for t in summary.per_day.values()) == summary.decisions
    assert summary.per_generation.keys() == {0} and summary.per_generation[0].decisions == summary.decisions
    value = summary.overall.to_dict()
    # Generation 0 is uniform: the logged policy is worth exactly the uniform choice, below the best action.
    assert value["expected_reward"] == pytest.approx(value["uniform_reward"], abs=1e-9)
    assert value["regret"] > 0.0 and 0.5 < value["authorisation_rate"] <= 1.0
    assert summary.decisions_per_second > 0


def test_flushing_posts_chargebacks_45_to_180_days_after_the_decision(tmp_path: Path) -> None:
    app = create_app(_settings(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path))
    summary, decisions, rewards = _run(app, days=1, decisions_per_day=150, seed=2, flush_rewards=True)
    chargebacks = [r for r in rewards if r.kind == "chargeback"]
    assert summary.unposted == {} and summary.errors == {}
    assert len(chargebacks) == summary.overall.authorised == summary.rewards_posted["chargeback"]
    assert summary.rewards_posted["authorisation"] == summary.decisions == len(decisions)
    for reward in chargebacks:
        delay = reward.observed_at - decisions[reward.decision_id].decided_at
        assert timedelta(days=45) <= delay <= timedelta(days=180) + MS
        assert timedelta(0) <= reward.received_at - reward.observed_at < MS


def test_the_same_seed_and_prefix_reproduce_every_decision(tmp_path: Path) -> None:
    runs = [
        _run(
            create_app(_settings(f"sqlite:///{tmp_path / f'{name}.db'}", tmp_path)),
            days=1,
            decisions_per_day=150,
            seed=9,
            id_prefix=prefix,
        )
        for name, prefix in (("a", "same-"), ("b", "same-"), ("c", None))
    ]
    (first, chosen, _), (second, again, _), (other, _, _) = runs

    def actions(decisions: dict[str, Decision]) -> dict[str, tuple[str, float]]:
        return {i: (d.action_id, d.propensity) for i, d in decisions.items()}

    assert actions(chosen) == actions(again) and len(chosen) == first.decisions
    assert first.overall == second.overall and first.rewards == second.rewards
    assert other.id_prefix.startswith("sim9-") and other.id_prefix != first.id_prefix  # run-unique by default


def test_a_server_without_simulated_clock_is_refused_before_anything_is_logged(tmp_path: Path) -> None:
    app = create_app(_settings(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path, simulated_clock=False))
    with pytest.raises(SimulatedClockRefused, match="BANDITGATE_SIMULATED_CLOCK=true") as refused:
        _run(app, days=1, decisions_per_day=100)
    summary = refused.value.summary
    assert summary is not None and summary.decisions == 0 and summary.errors["POST /v1/decisions 422"] >= 1
    assert "BANDITGATE_SIMULATED_CLOCK" in (summary.aborted or "")


# -- ordering, concurrency and errors, against a scripted service ----------------------------------------------


class ScriptedService:
    """A fake service that answers like banditgate (first action, uniform probabilities) and records requests.

    ``fail(path, n)`` returns a response to send instead, or ``None``; ``n`` counts requests to ``path``.
    """

    def __init__(self, fail: Callable[[str, int], httpx.Response | Exception | None] | None = None) -> None:
        self.fail = fail
        self.requests: list[tuple[str, datetime, dict[str, Any]]] = []
        self.answered: set[str] = set()
        self.counts: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = orjson.loads(request.content)
        self.requests.append((path, datetime.fromisoformat(request.headers[TIME_HEADER]), body))
        self.counts[path] = number = self.counts.get(path, 0) + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            failure = self.fail(path, number) if self.fail else None
            if isinstance(failure, Exception):
                raise failure
            if failure is not None:
                return failure
            if path == "/v1/decisions":
                ids = [a["id"] for a in body["actions"]]
                self.answered.add(body["decision_id"])
                return httpx.Response(
                    200,
                    json={
                        "decision_id": body["decision_id"],
                        "action_id": ids[0],
                        "probabilities": {a: 1 / len(ids) for a in ids},
                        "generation": 0,
                    },
                )
            assert body["decision_id"] in self.answered, "reward sent before its decision was acknowledged"
            return httpx.Response(201, json={"status": "recorded"})
        finally:
            self.in_flight -= 1

    def simulate(self, **options: Any) -> SimulationSummary:
        async def main() -> SimulationSummary:
            transport = httpx.MockTransport(self)
            async with httpx.AsyncClient(transport=transport, base_url="http://scripted") as client:
                return await run_simulation(client, PaymentWorld(), **options)

        return asyncio.run(main())


def test_requests_leave_in_time_order_with_bounded_concurrency() -> None:
    service = ScriptedService()
    summary = service.simulate(days=2, decisions_per_day=300, seed=1, concurrency=8)
    decisions = [(t, body) for path, t, body in service.requests if path == "/v1/decisions"]
    assert [t for t, _ in decisions] == sorted(t for t, _ in decisions)
    assert 1 < service.max_in_flight <= 8
    clock = datetime.min.replace(tzinfo=UTC)
    for path, t, body in service.requests:
        if path == "/v1/decisions":
            clock = t
            continue
        observed = datetime.fromisoformat(body["observed_at"])
        assert timedelta(0) <= t - observed < MS  # stamped with its observation time
        day_end = datetime.combine(clock.date() + timedelta(days=1), datetime.min.time(), UTC)
        assert observed <= day_end  # never ahead of the simulated day being played
    assert summary.decisions == len(decisions) and summary.errors == {}
    assert summary.rewards == {"authorisation": {"recorded": summary.rewards_posted["authorisation"]}}


def test_failed_requests_are_counted_and_their_rewards_never_sent() -> None:
    def fail(path: str, n: int) -> httpx.Response | Exception | None:
        if path == "/v1/decisions" and n % 10 == 0:
            return httpx.Response(503, json={"message": "the decision log is unavailable"})
        if path == "/v1/rewards" and n % 25 == 0:
            return httpx.ConnectError("connection refused")
        return None

    service = ScriptedService(fail)
    summary = service.simulate(days=1, decisions_per_day=200, seed=3)
    failed_decisions = summary.transactions // 10
    assert summary.errors["POST /v1/decisions 503"] == failed_decisions
    assert summary.decisions == summary.transactions - failed_decisions
    assert summary.error_examples["POST /v1/decisions 503"] == "HTTP 503: the decision log is unavailable"
    assert summary.errors["POST /v1/rewards transport"] == service.counts["/v1/rewards"] // 25
    assert summary.error_examples["POST /v1/rewards transport"] == "ConnectError: connection refused"
    posted = summary.rewards_posted["authorisation"] + summary.errors["POST /v1/rewards transport"]
    assert posted + summary.unposted["authorisation"] == summary.decisions


def test_consecutive_failures_abort_with_the_last_error() -> None:
    service = ScriptedService(lambda path, n: httpx.Response(500, text="boom") if n > 20 else None)
    with pytest.raises(TooManyFailures, match=r"5 failed requests in a row; last: POST /v1/\w+ 500: HTTP 500: boom"):
        service.simulate(days=1, decisions_per_day=500, max_consecutive_failures=5, concurrency=4)
    assert len(service.requests) < 60  # stopped right away, not at the horizon


def test_options_are_checked() -> None:
    service = ScriptedService()
    for options, message in [
        ({"days": 0, "decisions_per_day": 10}, "must be positive"),
        ({"days": 1, "decisions_per_day": 10, "concurrency": 0}, "at least 1"),
        ({"days": 1, "decisions_per_day": 10, "id_prefix": "has space"}, "visible ASCII"),
    ]:
        with pytest.raises(ValueError, match=message):
            service.simulate(**options)
    assert service.requests == []
