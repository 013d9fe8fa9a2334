"""Every acknowledged decision is in the database, even when the server (and its decision process) is killed
with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from banditgate.ledger.db import make_engine
from banditgate.ledger.models import Decision
from tests.support.server import free_port

BODY = {"context": {"amount_eur": 12.0, "issuer_country": "DE"}, "actions": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}


def start_server(database_url: str, port: int, tmp_path: Path, decision_process: bool = True) -> subprocess.Popen:
    env = {
        **os.environ,
        "BANDITGATE_DATABASE_URL": database_url,
        "BANDITGATE_ARTIFACT_DIR": str(tmp_path / "art"),
        "BANDITGATE_DECISION_PROCESS": str(decision_process).lower(),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "banditgate.service.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180  # room for a loaded machine: the decision process imports LightGBM & co.
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {process.stderr.read().decode() if process.stderr else ''}")


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def decision_processes(pid: int, expected: int) -> list[int]:
    """The ``expected`` decision processes of the server ``pid``, oldest (the running one) first, then the
    standby, once it has launched both."""
    deadline = time.monotonic() + 120
    while len(children(pid)) != expected:
        assert time.monotonic() < deadline, f"the server has {len(children(pid))} decision processes, not {expected}"
        time.sleep(0.1)
    return sorted(children(pid), key=started)


def started(pid: int) -> int:
    """When ``pid`` started, in clock ticks since boot (field 22 of ``/proc/PID/stat``)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def wait_for_exit(pids: list[int]) -> None:
    """The orphaned decision processes exit once their serving process is gone."""
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "a decision process outlived its serving process"
        time.sleep(0.1)


def assert_all_stored(database_url: str, port: int, tmp_path: Path, acknowledged: list[str]) -> None:
    """Restart the server (recovery, WAL replay, happens then): every acknowledged decision is stored and replays."""
    restarted = start_server(database_url, port, tmp_path)
    try:
        engine = make_engine(database_url)
        with engine.connect() as connection:
            stored = set(connection.scalars(select(Decision.decision_id)))
        engine.dispose()
        assert set(acknowledged) <= stored, f"{len(set(acknowledged) - stored)} acknowledged decisions were lost"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            replay = client.post("/v1/decisions", json={**BODY, "decision_id": acknowledged[-1]})
        assert replay.status_code == 200
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)


async def burst(url: str, n: int, acknowledged: list[str], kill_after: int, kill: Callable[[], None]) -> None:
    """Send ``n`` decisions over 32 connections; ``kill`` once ``kill_after`` are acknowledged."""
    connections = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=32)) as client:

        async def one(i: int) -> None:
            try:
                async with connections:
                    response = await client.post("/v1/decisions", json={**BODY, "decision_id": f"burst-{i}"})
            except httpx.HTTPError:
                return  # in flight when the server died: never acknowledged
            if response.status_code == 200:
                acknowledged.append(response.json()["decision_id"])
                if len(acknowledged) == kill_after:
                    kill()

        await asyncio.gather(*(one(i) for i in range(n)))


@pytest.mark.slow
@pytest.mark.parametrize("decision_process", [True, False], ids=["decision-process", "in-process"])
def test_acknowledged_decisions_survive_sigkill(database_url: str, tmp_path: Path, decision_process: bool) -> None:
    """SIGKILL of the serving process (its decision process, if any, then sees the socket close and exits)."""
    port = free_port()
    process = start_server(database_url, port, tmp_path, decision_process)
    helpers = decision_processes(process.pid, 2 if decision_process else 0)  # running and standby
    acknowledged: list[str] = []
    try:
        asyncio.run(burst(f"http://127.0.0.1:{port}", 3000, acknowledged, kill_after=1500, kill=process.kill))
    finally:
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 1500
    wait_for_exit(helpers)
    assert_all_stored(database_url, port, tmp_path, acknowledged)


@pytest.mark.slow
def test_acknowledged_decisions_survive_sigkill_of_the_decision_process_and_the_serving_process(
    database_url: str, tmp_path: Path
) -> None:
    """Both processes killed at once, mid-load: the decisions the decision process committed and the serving
    process acknowledged are all there after a restart."""
    port = free_port()
    process = start_server(database_url, port, tmp_path)
    running, standby = decision_processes(process.pid, 2)

    def kill_both() -> None:
        os.kill(running, signal.SIGKILL)
        process.send_signal(signal.SIGKILL)

    acknowledged: list[str] = []
    try:
        asyncio.run(burst(f"http://127.0.0.1:{port}", 3000, acknowledged, kill_after=1500, kill=kill_both))
    finally:
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 1500
    wait_for_exit([running, standby])  # the standby sees its socket close and exits too
    assert_all_stored(database_url, port, tmp_path, acknowledged)
