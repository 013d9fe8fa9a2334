"""Every acknowledged decision is in the database, even when the server is killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
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
    deadline = time.monotonic() + 60
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


async def burst(url: str, n: int, acknowledged: list[str], kill_after: int, process: subprocess.Popen) -> None:
    """Send ``n`` decisions over 32 connections; SIGKILL the server once ``kill_after`` are acknowledged."""
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
                    process.send_signal(signal.SIGKILL)

        await asyncio.gather(*(one(i) for i in range(n)))


@pytest.mark.slow
@pytest.mark.parametrize("decision_process", [True, False], ids=["decision-process", "in-process"])
def test_acknowledged_decisions_survive_sigkill(database_url: str, tmp_path: Path, decision_process: bool) -> None:
    """SIGKILL of the serving process (its decision process, if any, then sees the socket close and exits)."""
    port = free_port()
    process = start_server(database_url, port, tmp_path, decision_process)
    helpers = children(process.pid)
    assert len(helpers) == (1 if decision_process else 0)
    acknowledged: list[str] = []
    try:
        asyncio.run(burst(f"http://127.0.0.1:{port}", 3000, acknowledged, kill_after=1500, process=process))
    finally:
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 1500
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in helpers):  # the orphaned decision process exits
        assert time.monotonic() < deadline, "the decision process outlived its serving process"
        time.sleep(0.1)

    restarted = start_server(database_url, port, tmp_path)  # recovery (WAL replay) happens on restart
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
