"""Run a :class:`~banditgate.simulator.world.PaymentWorld` scenario against the service's public HTTP API.

The driver plays the payment gateway. Transactions are sent to ``POST /v1/decisions`` in simulated time
order; the chosen action's outcome is drawn from the world, and each reward is sent to ``POST /v1/rewards``
once the simulated clock has passed its ``observed_at`` (authorisations seconds later, chargebacks months
later). Every request carries ``X-Banditgate-Time``, the simulated time at which a gateway would send it (a
decision: the transaction's arrival; a reward: its observation, rounded up to the millisecond the service
keeps so that ``received_at >= observed_at``), so the ledger's ``decided_at`` and ``received_at`` are
simulated. The service must run with ``BANDITGATE_SIMULATED_CLOCK=true``.

Requests leave in time order with at most ``concurrency`` in flight (the service commits concurrent decisions
in one group), and a reward is only sent once its decision has been acknowledged. At each day boundary the
driver waits for everything in flight, posts the rewards observed by then and calls ``on_day_end`` (e.g. to
retrain and promote). At the horizon, rewards not yet observed stay unposted (late labels, as in production)
unless ``flush_rewards`` fast-forwards past the last one.

The driver only speaks HTTP through an :class:`httpx.AsyncClient`: to a running server (a base URL), or to an
ASGI app in the same process (:func:`in_process_client`). It imports nothing of the service.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import numpy as np
import orjson
from starlette.applications import Starlette

from banditgate.simulator.clock import SimulatedClock, require_aware
from banditgate.simulator.outcomes import RewardEvent
from banditgate.simulator.pending import PendingEvents
from banditgate.simulator.traffic import TrafficBatch, Transaction
from banditgate.simulator.world import PaymentWorld

#: The request header that states a request's simulated time.
TIME_HEADER = "X-Banditgate-Time"
#: The setting a server needs for :data:`TIME_HEADER` (named in its 422 refusal).
SIMULATED_CLOCK_SETTING = "BANDITGATE_SIMULATED_CLOCK"
DECISIONS_PATH = "/v1/decisions"
REWARDS_PATH = "/v1/rewards"

#: ``on_day_end(day, day_end)``: ``day`` counts from 0, ``day_end`` is the simulated time of the boundary.
DayEndHook = Callable[[int, datetime], Awaitable[None]]
#: ``on_progress(decisions_done, decisions_expected)``, after every acknowledged or failed decision.
ProgressHook = Callable[[int, int], None]

_ID_PREFIX = re.compile(r"^[\x21-\x7e]{0,100}$")
_JSON_HEADERS = {"Content-Type": "application/json"}


class SimulationError(RuntimeError):
    """The simulation stopped before its horizon; :attr:`summary` holds what happened until then."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.summary: SimulationSummary | None = None


class SimulatedClockRefused(SimulationError):
    """The server refuses ``X-Banditgate-Time``: it does not run with ``BANDITGATE_SIMULATED_CLOCK=true``."""


class TooManyFailures(SimulationError):
    """Too many requests failed in a row."""


@dataclass
class Tally:
    """Decisions of one slice of a run (a day, a generation, the whole run) and the true value of what was served.

    The ``expected_*`` fields are sums over the slice's decisions of the true probability of authorisation:
    under the logged action probabilities, under the best eligible action, and under uniform random choice.

    Examples
    --------
    >>> tally = Tally()
    >>> tally.add(generation=0, authorised=True, logged=0.8, best=0.9, uniform=0.7)
    >>> tally.add(generation=1, authorised=False, logged=0.6, best=0.7, uniform=0.5)
    >>> {k: round(v, 3) if isinstance(v, float) else v for k, v in tally.to_dict().items()}
    {'decisions': 2, 'authorisation_rate': 0.5, 'expected_reward': 0.7, 'best_reward': 0.8, 'uniform_reward': 0.6, \
'regret': 0.1, 'lift_over_uniform': 0.1, 'generations': {0: 1, 1: 1}}
    """

    decisions: int = 0
    authorised: int = 0
    expected_logged: float = 0.0
    expected_best: float = 0.0
    expected_uniform: float = 0.0
    generations: Counter[int] = field(default_factory=Counter)

    def add(self, generation: int, authorised: bool, logged: float, best: float, uniform: float) -> None:
        """Count one decision.

        Parameters
        ----------
        generation
            The policy generation that served it.
        authorised
            Whether the world authorised the payment under the chosen action.
        logged, best, uniform
            True authorisation probability under the logged probabilities, the best eligible action and a
            uniform choice among the eligible actions.
        """
        self.decisions += 1
        self.authorised += authorised
        self.expected_logged += logged
        self.expected_best += best
        self.expected_uniform += uniform
        self.generations[generation] += 1

    def to_dict(self) -> dict[str, Any]:
        """Counts and per-decision means (``None`` when the slice is empty); ``regret`` is best minus logged."""
        n = self.decisions

        def mean(total: float) -> float | None:
            return total / n if n else None

        logged, best, uniform = mean(self.expected_logged), mean(self.expected_best), mean(self.expected_uniform)
        return {
            "decisions": n,
            "authorisation_rate": mean(self.authorised),
            "expected_reward": logged,
            "best_reward": best,
            "uniform_reward": uniform,
            "regret": None if best is None or logged is None else best - logged,
            "lift_over_uniform": None if uniform is None or logged is None else logged - uniform,
            "generations": dict(sorted(self.generations.items())),
        }


@dataclass
class SimulationSummary:
    """What a run did: counts, errors, the true value of the logged policy, timing.

    Attributes
    ----------
    scenario, days, decisions_per_day, seed, id_prefix, start, end, flush_rewards
        The run's parameters; ``end`` is the horizon, ``start + days``.
    transactions
        Transactions sent to ``POST /v1/decisions`` (acknowledged or not).
    overall, per_day, per_generation
        Acknowledged decisions and their value, in total, per simulated day and per generation served.
    rewards
        Acknowledged rewards: ``{kind: {status: count}}``, status ``recorded``, ``duplicate`` or ``revised``.
    unposted
        Rewards not yet observed at the end (``{kind: count}``): late labels when ``flush_rewards`` is off.
    errors
        Failed requests: ``{"<endpoint> <status>": count}``, status an HTTP code, ``transport`` or
        ``bad-response``.
    error_examples
        The first message of each kind of error.
    wall_seconds
        Wall-clock duration of the run.
    aborted
        Why the run stopped early, or ``None``.
    """

    scenario: str
    days: int
    decisions_per_day: int
    seed: int
    id_prefix: str
    start: datetime
    end: datetime
    flush_rewards: bool
    transactions: int = 0
    overall: Tally = field(default_factory=Tally)
    per_day: dict[int, Tally] = field(default_factory=dict)
    per_generation: dict[int, Tally] = field(default_factory=dict)
    rewards: dict[str, Counter[str]] = field(default_factory=dict)
    unposted: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    aborted: str | None = None

    @property
    def decisions(self) -> int:
        """Acknowledged decisions."""
        return self.overall.decisions

    @property
    def decisions_per_second(self) -> float:
        """Acknowledged decisions per wall-clock second."""
        return self.decisions / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def rewards_posted(self) -> dict[str, int]:
        """Acknowledged rewards per kind (every status)."""
        return {kind: sum(statuses.values()) for kind, statuses in sorted(self.rewards.items())}

    @property
    def failed_requests(self) -> int:
        """Requests that failed, all kinds together."""
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of the whole summary."""
        return {
            "scenario": self.scenario,
            "days": self.days,
            "decisions_per_day": self.decisions_per_day,
            "seed": self.seed,
            "id_prefix": self.id_prefix,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "flush_rewards": self.flush_rewards,
            "transactions": self.transactions,
            "decisions": self.decisions,
            "rewards_posted": self.rewards_posted,
            "rewards_by_status": {kind: dict(statuses) for kind, statuses in sorted(self.rewards.items())},
            "rewards_unposted": dict(sorted(self.unposted.items())),
            "failed_requests": self.failed_requests,
            "errors": dict(sorted(self.errors.items())),
            "error_examples": self.error_examples,
            "aborted": self.aborted,
            "wall_seconds": self.wall_seconds,
            "decisions_per_second": self.decisions_per_second,
            "overall": self.overall.to_dict(),
            "per_day": [
                {"day": day, "date": (self.start + timedelta(days=day)).date().isoformat(), **tally.to_dict()}
                for day, tally in sorted(self.per_day.items())
            ],
            "per_generation": [
                {"generation": generation, **tally.to_dict()}
                for generation, tally in sorted(self.per_generation.items())
            ],
        }


@asynccontextmanager
async def in_process_client(
    app: Starlette, base_url: str = "http://banditgate.local"
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on an ASGI app in this process, with the app's lifespan run around it.

    Parameters
    ----------
    app
        A Starlette / FastAPI application, e.g. ``create_app(settings)``; its start-up runs on entry and its
        shutdown on exit.
    base_url
        The URL the requests appear to go to.

    The transport turns an exception in the app into a 500, as a server would, instead of raising it here.
    """
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=base_url, timeout=30.0
        ) as client,
    ):
        yield client


async def run_simulation(
    client: httpx.AsyncClient,
    world: PaymentWorld,
    *,
    days: int,
    decisions_per_day: int,
    seed: int = 0,
    policy: str | None = None,
    id_prefix: str | None = None,
    start: datetime | None = None,
    concurrency: int = 16,
    flush_rewards: bool = False,
    max_consecutive_failures: int = 50,
    on_day_end: DayEndHook | None = None,
    on_progress: ProgressHook | None = None,
) -> SimulationSummary:
    """Send ``days`` days of the world's traffic to the service and its rewards as they mature.

    Parameters
    ----------
    client
        Client on the service: ``httpx.AsyncClient(base_url=url)`` or :func:`in_process_client`.
    world
        The payment world (its scenario drifts from its epoch on).
    days
        Simulated days (positive).
    decisions_per_day
        Average transactions a day (positive; weekdays and hours follow the world's seasonality).
    seed
        Traffic seed: the same seed gives the same transactions and outcomes.
    policy
        Policy to ask (default: the service's default policy).
    id_prefix
        Prefix of the decision ids. Default: ``f"sim{seed}-<8 random hex>-"``, unique per run so that runs
        never collide in one ledger. The service's draw is a pure function of (decision id, policy,
        generation), so a fixed prefix on a fresh ledger reproduces every decision.
    start
        Simulated time of the first day (default: the world's epoch).
    concurrency
        Most requests in flight at once. Over the network, keep it near 16: httpcore's connection pool
        (1.0.x) spends time quadratic in the number of connections on every request, and at 32 the client
        burns three times the CPU for a third of the throughput.
    flush_rewards
        At the horizon, also post every reward not yet observed (fast-forward past the last chargeback);
        default: only what has matured by the end, the rest is counted in ``unposted``.
    max_consecutive_failures
        Abort (:class:`TooManyFailures`) after this many failed requests in a row.
    on_day_end
        Awaited after each simulated day, once its decisions are acknowledged and the rewards observed by the
        boundary are posted: ``on_day_end(day, day_end)``.
    on_progress
        Called after each decision with ``(decisions done, decisions expected)``.

    Returns
    -------
    SimulationSummary
        Also when some requests failed: they are counted in ``errors``.

    Raises
    ------
    SimulatedClockRefused
        The server does not accept ``X-Banditgate-Time`` (nothing was logged).
    TooManyFailures
        ``max_consecutive_failures`` requests failed in a row.

    Both carry the partial summary in ``summary``.

    Examples
    --------
    >>> import asyncio, tempfile
    >>> from banditgate.service.app import create_app
    >>> from banditgate.service.settings import Settings
    >>> async def main(folder: str) -> SimulationSummary:
    ...     settings = Settings(database_url=f"sqlite:///{folder}/ledger.db", simulated_clock=True)
    ...     async with in_process_client(create_app(settings)) as client:
    ...         return await run_simulation(client, PaymentWorld("concept"), days=2, decisions_per_day=50, seed=1)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     summary = asyncio.run(main(folder))
    >>> summary.decisions == summary.transactions == summary.rewards_posted["authorisation"], summary.errors
    (True, Counter())
    >>> summary.unposted["chargeback"] > 0, "chargeback" in summary.rewards_posted
    (True, False)
    """
    if days <= 0 or decisions_per_day <= 0:
        raise ValueError(f"days and decisions_per_day must be positive, got {days} and {decisions_per_day}")
    if concurrency < 1 or max_consecutive_failures < 1:
        raise ValueError(
            f"concurrency and max_consecutive_failures must be at least 1, got {concurrency} and "
            f"{max_consecutive_failures}"
        )
    id_prefix = f"sim{seed}-{secrets.token_hex(4)}-" if id_prefix is None else check_id_prefix(id_prefix)
    start = world.epoch if start is None else require_aware(start, "start")
    summary = SimulationSummary(
        scenario=world.scenario.name,
        days=days,
        decisions_per_day=decisions_per_day,
        seed=seed,
        id_prefix=id_prefix,
        start=start,
        end=start + timedelta(days=days),
        flush_rewards=flush_rewards,
    )
    runner = _Runner(client, summary, policy, concurrency, max_consecutive_failures, on_progress)
    began = time.perf_counter()
    try:
        await runner.run(world, seed, flush_rewards, on_day_end)
    except SimulationError as exc:
        summary.aborted = str(exc)
        exc.summary = summary
        raise
    finally:
        summary.wall_seconds = time.perf_counter() - began
        summary.unposted.update(event.kind for event in runner.pending.drain_all())
    return summary


def check_id_prefix(id_prefix: str) -> str:
    """``id_prefix`` itself, or ``ValueError`` when decision ids made with it would be refused.

    >>> check_id_prefix("run-7/")
    'run-7/'
    >>> check_id_prefix("run 7")
    Traceback (most recent call last):
    ...
    ValueError: id_prefix must be at most 100 visible ASCII characters without spaces, got 'run 7'
    """
    if not _ID_PREFIX.match(id_prefix):
        raise ValueError(f"id_prefix must be at most 100 visible ASCII characters without spaces, got {id_prefix!r}")
    return id_prefix


class _Runner:
    """The state of one run: requests in flight, pending rewards, failure streak."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        summary: SimulationSummary,
        policy: str | None,
        concurrency: int,
        max_consecutive_failures: int,
        on_progress: ProgressHook | None,
    ) -> None:
        self.client = client
        self.summary = summary
        self.policy = policy
        self.max_consecutive_failures = max_consecutive_failures
        self.on_progress = on_progress
        self.pending = PendingEvents()
        self.clock = SimulatedClock(summary.start)
        self.slots = asyncio.Semaphore(concurrency)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.consecutive_failures = 0
        self.stop: BaseException | None = None
        self.done = 0
        self.expected = summary.days * summary.decisions_per_day

    async def run(self, world: PaymentWorld, seed: int, flush_rewards: bool, on_day_end: DayEndHook | None) -> None:
        summary = self.summary
        try:
            batches = world.traffic_batches(
                summary.start, summary.days, summary.decisions_per_day, seed, summary.id_prefix
            )
            for day, batch in enumerate(batches):
                self.expected += len(batch) - summary.decisions_per_day
                tally = summary.per_day.setdefault(day, Tally())
                best, uniform = _reference_values(batch)
                for tx, tx_best, tx_uniform in zip(batch.transactions(), best, uniform, strict=True):
                    self.clock.advance_to(tx.t)
                    await self._post_rewards(self.pending.drain(tx.t))
                    await self._spawn(self._decide(tx, tally, tx_best, tx_uniform))
                    summary.transactions += 1
                day_end = self.clock.advance_to(summary.start + timedelta(days=day + 1))
                await self._settle(day_end)
                if on_day_end is not None:
                    await on_day_end(day, day_end)
            if flush_rewards:
                await self._settle(None)
        except SimulationError:
            await self._wait_in_flight()
            raise
        except BaseException:
            for task in self.in_flight:
                task.cancel()
            await self._wait_in_flight()
            raise

    # -- dispatch --------------------------------------------------------------------------------------

    async def _spawn(self, request: Coroutine[Any, Any, None]) -> None:
        """Start ``request`` once a slot is free (requests leave in the order they are spawned)."""
        try:
            await self.slots.acquire()
            self._raise_if_stopped()
        except BaseException:
            request.close()
            raise
        task = asyncio.ensure_future(request)
        self.in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.slots.release()
        if not task.cancelled() and task.exception() is not None and self.stop is None:
            self.stop = task.exception()

    def _raise_if_stopped(self) -> None:
        if self.stop is not None:
            self.slots.release()
            raise self.stop

    async def _wait_in_flight(self) -> None:
        if self.in_flight:
            await asyncio.wait(set(self.in_flight))

    async def _settle(self, until: datetime | None) -> None:
        """Wait for the requests in flight, then post the rewards observed by ``until`` (``None``: all of them),
        until nothing is left to post."""
        while True:
            await self._wait_in_flight()
            if self.stop is not None:
                raise self.stop
            ready = self.pending.drain_all() if until is None else self.pending.drain(until)
            if not ready:
                return
            await self._post_rewards(ready)

    async def _post_rewards(self, events: Iterable[RewardEvent]) -> None:
        for event in events:
            await self._spawn(self._reward(event))

    # -- requests --------------------------------------------------------------------------------------

    async def _decide(self, tx: Transaction, tally: Tally, best: float, uniform: float) -> None:
        try:
            body = await self._post(DECISIONS_PATH, tx.decision_request(self.policy), tx.t)
            if body is not None:
                self._record(tx, body, tally, best, uniform)
        finally:
            self.done += 1
            if self.on_progress is not None:
                self.on_progress(self.done, self.expected)

    def _record(self, tx: Transaction, body: Any, day: Tally, best: float, uniform: float) -> None:
        """Draw the outcome of the decision the service made and count it; a malformed answer is an error."""
        try:
            generation = int(body["generation"])
            probabilities = {str(a): float(p) for a, p in body["probabilities"].items()}
            outcome = tx.outcome(str(body["action_id"]))
            logged = tx.expected_reward(probabilities)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._failed(DECISIONS_PATH, "bad-response", f"decision {tx.id}: {type(exc).__name__}: {exc}")
            return
        self.pending.extend(outcome.events)
        by_generation = self.summary.per_generation.setdefault(generation, Tally())
        for tally in (day, self.summary.overall, by_generation):
            tally.add(generation, outcome.authorised, logged, best, uniform)

    async def _reward(self, event: RewardEvent) -> None:
        body = await self._post(REWARDS_PATH, event.payload(), _ceil_ms(event.observed_at))
        if body is None:
            return
        status = body.get("status") if isinstance(body, dict) else None
        if not isinstance(status, str):
            self._failed(REWARDS_PATH, "bad-response", f"reward for {event.decision_id}: no status in {body!r:.200}")
            return
        self.summary.rewards.setdefault(event.kind, Counter())[status] += 1

    async def _post(self, path: str, body: dict[str, Any], when: datetime) -> Any:
        """POST ``body`` stamped with simulated time ``when``; the decoded answer, or ``None`` (counted) on error."""
        headers = {**_JSON_HEADERS, TIME_HEADER: when.isoformat()}
        try:
            response = await self.client.post(path, content=orjson.dumps(body), headers=headers)
        except httpx.HTTPError as exc:
            self._failed(path, "transport", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return None
        if response.is_error:
            message = _error_message(response)
            if response.status_code == 422 and SIMULATED_CLOCK_SETTING in message:
                self._stop(
                    SimulatedClockRefused(
                        f"the service refuses simulated time ({message}); restart it with "
                        f"{SIMULATED_CLOCK_SETTING}=true (simulations and replays only, never in production)"
                    )
                )
            self._failed(path, str(response.status_code), message)
            return None
        try:
            decoded = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            self._failed(path, "bad-response", f"not JSON: {response.text[:200]!r}")
            return None
        self.consecutive_failures = 0
        return decoded

    def _failed(self, path: str, status: str, message: str) -> None:
        key = f"POST {path} {status}"
        self.summary.errors[key] += 1
        self.summary.error_examples.setdefault(key, message)
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.max_consecutive_failures:
            self._stop(
                TooManyFailures(
                    f"aborted after {self.consecutive_failures} failed requests in a row; last: {key}: {message}"
                )
            )

    def _stop(self, reason: SimulationError) -> None:
        if self.stop is None:
            self.stop = reason


def _reference_values(batch: TrafficBatch) -> tuple[list[float], list[float]]:
    """Per transaction, the true authorisation probability of the best eligible action and of a uniform choice."""
    p = np.where(batch.eligible, batch.p_authorisation, 0.0)
    best = p.max(axis=1)
    uniform = p.sum(axis=1) / batch.eligible.sum(axis=1)
    return best.tolist(), uniform.tolist()


def _ceil_ms(t: datetime) -> datetime:
    """``t`` rounded up to the millisecond (the service truncates request times to the millisecond)."""
    extra = t.microsecond % 1000
    return t if extra == 0 else t + timedelta(microseconds=1000 - extra)


def _error_message(response: httpx.Response) -> str:
    """The service's one-line ``message``, or the start of the body."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    message = body.get("message") if isinstance(body, dict) else None
    return f"HTTP {response.status_code}: {message if isinstance(message, str) else str(body)[:200]}"
