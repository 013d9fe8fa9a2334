"""A promotion under steady load: two serving processes on one database switch generation, and no request fails.

Server A takes the promotion through its admin endpoint and switches at once; server B notices the new revision
on its next poll (BANDITGATE_POLICY_REFRESH_SECONDS=1). The test prints B's switch delay and the client-side
latency percentiles before, during and after the switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from banditgate.ledger import registry
from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.models import Decision
from tests.service.helpers import ACTIONS, train_oracle
from tests.support.server import free_port

API_KEY = "load-test-key-0123456789"
LOAD_SECONDS = 15.0
PROMOTE_AFTER = 7.0
IN_FLIGHT = 8  # concurrent requests per server
OVERRIDE = {"by": "load-test", "reason": "mechanics of the switch under load", "until": "2199-01-01T00:00:00Z"}
BODY = {"context": {"amount_eur": 20.0, "issuer_country": "NL"}, "actions": ACTIONS}


@dataclass(frozen=True)
class Sample:
    server: str
    sent: float
    received: float
    status: int | None  # None: no response (connection error or timeout)
    generation: int | None = None
    decided_at: str = ""  # the server's clock, when it answered 200

    @property
    def latency(self) -> float:
        return self.received - self.sent


def start_server(database_url: str, artifact_dir: Path, log: IO[bytes]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "BANDITGATE_DATABASE_URL": database_url,
        "BANDITGATE_ARTIFACT_DIR": str(artifact_dir),
        "BANDITGATE_API_KEY": API_KEY,
        "BANDITGATE_POLICY_REFRESH_SECONDS": "1",
        "BANDITGATE_LOG_LEVEL": "WARNING",
        # no decision process dies here: a standby beside each one would only take CPU from the load
        "BANDITGATE_DECISION_PROCESS_STANDBY": "false",
    }
    command = [sys.executable, "-m", "banditgate.service.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start (log: {log.name})")


def register_candidate(database_url: str, artifact_dir: Path) -> str:
    """Generation 1 of ``default`` as a candidate, the way the retraining job leaves it; returns its sha256."""
    oracle = train_oracle()
    path, digest = registry.store_artifact(artifact_dir, "default", 1, oracle.to_bytes())
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as session, session.begin():
        registry.register_generation(
            session,
            "default",
            artifact_path=path,
            artifact_sha256=digest,
            oracle=oracle.kind,
            oracle_params=oracle.hyperparameters(),
            exploration="squarecb",
            exploration_params={},
        )
    engine.dispose()
    return digest


async def run_load(urls: dict[str, str]) -> tuple[list[Sample], float, float, httpx.Response]:
    """Decisions against every server for LOAD_SECONDS; promote generation 1 through A after PROMOTE_AFTER.

    Returns the samples, when the promotion was sent and answered (perf_counter), and its response.
    """
    samples: list[Sample] = []
    start = time.perf_counter()
    end = start + LOAD_SECONDS

    async def worker(server: str, client: httpx.AsyncClient, worker_id: int) -> None:
        for i in itertools.count():
            sent = time.perf_counter()
            if sent >= end:
                return
            try:
                response = await client.post("/v1/decisions", json={**BODY, "decision_id": f"{server}-{worker_id}-{i}"})
            except httpx.HTTPError:
                samples.append(Sample(server, sent, time.perf_counter(), None))
                continue
            received = time.perf_counter()
            if response.status_code != 200:
                samples.append(Sample(server, sent, received, response.status_code))
                continue
            body = response.json()
            samples.append(Sample(server, sent, received, 200, body["generation"], body["decided_at"]))

    async def promoter(client: httpx.AsyncClient) -> tuple[float, float, httpx.Response]:
        await asyncio.sleep(PROMOTE_AFTER)
        sent = time.perf_counter()
        # The candidate has no evidence behind it (nothing was decided with it): an override lets it through,
        # on the evaluation stored before the load, so nothing is computed while requests are in flight.
        response = await client.post(
            "/v1/policies/default/generations/1/promote",
            json={"reason": "load test", "override": OVERRIDE},
            headers={"X-API-Key": API_KEY, "X-Actor": "load-test"},
        )
        return sent, time.perf_counter(), response

    limits = httpx.Limits(max_connections=IN_FLIGHT + 1)
    clients = {name: httpx.AsyncClient(base_url=url, timeout=10, limits=limits) for name, url in urls.items()}
    try:
        workers = [worker(name, client, w) for name, client in clients.items() for w in range(IN_FLIGHT)]
        *_, (promote_sent, promote_done, response) = await asyncio.gather(*workers, promoter(clients["A"]))
    finally:
        for client in clients.values():
            await client.aclose()
    return samples, promote_sent, promote_done, response


def percentiles(samples: list[Sample]) -> tuple[float, float, int]:
    """p50 and p99 latency in ms, and the number of samples."""
    if not samples:
        return float("nan"), float("nan"), 0
    latencies = np.array([s.latency for s in samples]) * 1000
    return float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99)), len(samples)


@pytest.mark.slow
def test_two_servers_switch_generation_under_load_without_failing_a_request(database_url: str, tmp_path: Path) -> None:
    artifact_dir = tmp_path / "artifacts"
    urls: dict[str, str] = {}
    processes: list[subprocess.Popen] = []
    with contextlib.ExitStack() as logs:
        try:
            # One after the other: the first one migrates the fresh database and creates the default policy.
            for name in ("A", "B"):
                log = logs.enter_context((tmp_path / f"server-{name}.log").open("wb"))
                process, urls[name] = start_server(database_url, artifact_dir, log)
                processes.append(process)
            digest = register_candidate(database_url, artifact_dir)
            # As a cron job would: the gate evaluation promotion relies on is computed and stored beforehand.
            stored = httpx.post(
                f"{urls['A']}/v1/policies/default/generations/1/gate",
                json={},
                headers={"X-API-Key": API_KEY},
                timeout=180,
            )
            assert stored.status_code == 201, stored.text
            samples, promote_sent, promote_done, response = asyncio.run(run_load(urls))
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=30)

    assert response.status_code == 200, response.text
    failed = [s for s in samples if s.status != 200]
    assert not failed, f"{len(failed)} of {len(samples)} requests failed, e.g. {failed[:3]}"

    by_server = {name: sorted((s for s in samples if s.server == name), key=lambda s: s.sent) for name in urls}
    first_new = {name: min(s.received for s in served if s.generation == 1) for name, served in by_server.items()}
    switch_delay = first_new["B"] - promote_done
    for name, served in by_server.items():
        assert all(s.generation == 0 for s in served if s.received < promote_sent), f"{name} served 1 too early"
        # Once a server served generation 1, it never goes back: by its own clock, every generation-0 decision
        # precedes every generation-1 decision.
        decided = {g: [s.decided_at for s in served if s.generation == g] for g in (0, 1)}
        assert max(decided[0]) <= min(decided[1]), f"{name} went back to generation 0"
    assert all(s.generation == 1 for s in by_server["A"] if s.sent > promote_done), "A did not switch at once"
    assert all(s.generation == 1 for s in by_server["B"] if s.sent > first_new["B"])
    assert switch_delay < 5.0, f"server B switched {switch_delay:.2f} s after the promotion"

    engine = make_engine(database_url)
    with engine.connect() as connection:
        logged = dict(connection.execute(select(Decision.generation, func.count()).group_by(Decision.generation)).all())
        hashes = set(connection.scalars(select(Decision.model_sha256).where(Decision.generation == 1).distinct()))
    engine.dispose()
    assert logged == {g: sum(1 for s in samples if s.generation == g) for g in (0, 1)}
    assert hashes == {digest}

    print(f"\n{database_url.split(':')[0]}: {len(samples)} decisions in {LOAD_SECONDS:.0f} s over two servers")
    print(f"promotion answered in {(promote_done - promote_sent) * 1000:.1f} ms; B switched {switch_delay:.3f} s later")
    for name, served in by_server.items():
        phases = {
            "before": [s for s in served if s.received < promote_sent],
            "switching": [s for s in served if promote_sent <= s.received and s.sent <= first_new["B"]],
            "after": [s for s in served if s.sent > first_new["B"]],
        }
        for phase, chosen in phases.items():
            p50, p99, n = percentiles(chosen)
            print(f"  server {name} {phase:<9}: p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  ({n} requests)")
            assert n == 0 or p99 < 2000, f"server {name} p99 {p99:.0f} ms {phase} the promotion"
