"""The decision process behind a real server: what it serves, and what happens when it dies or cannot start.

The decisions and rewards API tests run in both modes already (``settings_in_both_modes``); these are the
behaviours of the process itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from banditgate.ledger.models import Decision
from banditgate.service.decision_client import ProcessDecisionService
from banditgate.service.decision_wire import FrameReader, frame
from banditgate.service.settings import Settings
from tests.conftest import API_KEY
from tests.service.helpers import deploy, train_oracle
from tests.support.server import LiveServer

BODY = {"context": {"amount_eur": 12.0, "issuer_country": "DE"}, "actions": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings.model_copy(update={"decision_process": True})) as live:
        yield live


def decision_process(server: LiveServer) -> ProcessDecisionService:
    decisions = server.runtime.decisions
    assert isinstance(decisions, ProcessDecisionService)
    return decisions


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def decisions_counted(client: httpx.Client) -> float:
    """The serving process's ``banditgate_decisions_total``, over every label."""
    lines = client.get("/metrics").text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("banditgate_decisions_total{"))


def test_decisions_are_made_and_logged_by_another_process(server: LiveServer) -> None:
    pid = decision_process(server).pid
    assert pid is not None and pid != os.getpid()
    with server.client() as client:
        counted = decisions_counted(client)
        body = client.post("/v1/decisions", json={**BODY, "decision_id": "tx-1"}).json()
        replay = client.post("/v1/decisions", json={**BODY, "decision_id": "tx-1"}).json()
        # Counted by the serving process, which exports /metrics, from what the decision process reported;
        # a replay is not a new decision.
        assert decisions_counted(client) == counted + 1
    assert replay == body
    assert server.runtime.decision_log.get_decision("tx-1").action_id == body["action_id"]


def test_a_policy_created_through_the_api_is_served_at_once(server: LiveServer) -> None:
    spec = {"exploration": "softmax", "exploration_params": {"temperature": 0.5}}
    with server.client(headers={"X-API-Key": API_KEY}) as client:
        assert client.put("/v1/policies/fraud.routing", json=spec).status_code == 201
        decision = client.post("/v1/decisions", json={**BODY, "policy": "fraud.routing"})
    assert decision.status_code == 200 and decision.json()["policy"] == "fraud.routing"


def test_a_stated_time_crosses_to_the_decision_process(settings: Settings) -> None:
    update = {"decision_process": True, "simulated_clock": True}
    with LiveServer(settings.model_copy(update=update)) as live, live.client() as client:
        headers = {"X-Banditgate-Time": "2026-03-01T09:15:00.123456+01:00"}
        body = client.post("/v1/decisions", json=BODY, headers=headers).json()
    assert body["decided_at"] == "2026-03-01T08:15:00.123Z"


def restarts_counted(client: httpx.Client) -> float:
    lines = client.get("/metrics").text.splitlines()
    return next(
        float(line.split()[1]) for line in lines if line.startswith("banditgate_decision_process_restarts_total")
    )


def test_a_killed_decision_process_is_restarted_and_nothing_acknowledged_is_lost(server: LiveServer) -> None:
    service = decision_process(server)
    first = service.pid
    with server.client() as client:
        restarts = restarts_counted(client)
        assert client.post("/v1/decisions", json={**BODY, "decision_id": "before"}).status_code == 200
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: not service.available())
        refused = client.post("/v1/decisions", json={**BODY, "decision_id": "during"})
        assert refused.status_code == 503, refused.text
        assert "nothing was recorded" in refused.json()["message"]
        assert client.get("/healthz").json()["decisions"] == "unavailable"
        wait_until(service.available)
        after = client.post("/v1/decisions", json={**BODY, "decision_id": "after"})
        assert client.get("/healthz").json()["decisions"] == "ok"
        assert restarts_counted(client) == restarts + 1
    assert after.status_code == 200
    assert service.pid not in (None, first) and service.restarts == 1
    assert server.runtime.decision_log.get_decision("before") is not None


def test_a_stuck_decision_process_is_killed_and_restarted(settings: Settings) -> None:
    update = {"decision_process": True, "decision_timeout_seconds": 2.0}
    with LiveServer(settings.model_copy(update=update)) as live, live.client() as client:
        service = decision_process(live)
        stuck = service.pid
        os.kill(stuck, signal.SIGSTOP)  # alive, but answers nothing
        started = time.monotonic()
        refused = client.post("/v1/decisions", json={**BODY, "decision_id": "while-stuck"})
        assert refused.status_code == 503 and "may have been logged or not" in refused.json()["message"]
        assert 2.0 <= time.monotonic() - started < 15.0
        wait_until(service.available)
        assert not alive(stuck) and service.pid != stuck
        again = client.post("/v1/decisions", json={**BODY, "decision_id": "while-stuck"})
    assert again.status_code == 200


def test_a_policy_change_while_the_decision_process_restarts_succeeds_and_is_served(server: LiveServer) -> None:
    service = decision_process(server)
    os.kill(service.pid, signal.SIGKILL)
    wait_until(lambda: not service.available())
    with server.client(headers={"X-API-Key": API_KEY}) as client:
        created = client.put("/v1/policies/retry", json={"exploration": "epsilon_greedy"})
        assert created.status_code == 201, created.text
        wait_until(service.available)
        decision = client.post("/v1/decisions", json={**BODY, "policy": "retry"})
    assert decision.status_code == 200 and decision.json()["policy"] == "retry"


def test_stopping_the_server_stops_its_decision_process_at_once(settings: Settings) -> None:
    with LiveServer(settings.model_copy(update={"decision_process": True})) as live:
        pid = decision_process(live).pid
        assert pid is not None and alive(pid)
        stopping = time.monotonic()
    assert not alive(pid)
    # It exits when the socket closes, not after the 60 s the serving process waits before SIGKILL.
    assert time.monotonic() - stopping < 20


def test_both_modes_answer_with_the_same_bytes(tmp_path: Path) -> None:
    """The same request to a server deciding in-process and to one with a decision process, each on a ledger of
    its own serving the same trained generation: byte for byte the same answer."""
    oracle = train_oracle()
    body = {**BODY, "decision_id": "tx-1", "context": {**BODY["context"], "note": "caf\u00e9 \u2713"}}
    headers = {"X-Banditgate-Time": "2026-03-01T09:15:00.123+01:00"}
    answers = []
    for decision_process in (False, True):
        folder = tmp_path / str(decision_process)
        settings = Settings(
            database_url=f"sqlite:///{folder / 'ledger.db'}",
            artifact_dir=folder / "artifacts",
            decision_process=decision_process,
            simulated_clock=True,
        )
        with LiveServer(settings) as live, live.client() as client:
            deploy(live, "default", oracle, exploration_params={"gamma": 50.0})
            answers.append(client.post("/v1/decisions", json=body, headers=headers))
    assert [answer.status_code for answer in answers] == [200, 200], answers[0].text
    assert answers[0].json()["generation"] == 1 and answers[0].json()["decided_at"] == "2026-03-01T08:15:00.123Z"
    assert answers[1].content == answers[0].content


def test_a_decision_process_that_cannot_start_fails_the_start_up_with_its_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    broken = Settings(database_url=f"sqlite:///{blocker}/ledger.db", artifact_dir=tmp_path / "artifacts")
    with pytest.raises(RuntimeError, match=r"the decision process failed to start: FileExistsError"):
        asyncio.run(ProcessDecisionService(broken).start())


@pytest.mark.slow
def test_killing_the_decision_process_under_load_loses_no_acknowledged_decision(server: LiveServer) -> None:
    """Requests in flight get a 503 that says their outcome is unknown; sending them again answers them."""
    service = decision_process(server)
    acknowledged: list[str] = []
    unknown: list[str] = []
    lost: list[str] = []
    statuses: list[int] = []

    async def burst(n: int, kill_after: int) -> None:
        connections = asyncio.Semaphore(32)
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:

            async def one(i: int) -> None:
                async with connections:
                    try:
                        response = await client.post("/v1/decisions", json={**BODY, "decision_id": f"burst-{i}"})
                    except httpx.TransportError:
                        # A kept-alive connection the server closed as idle just as this request went out (on a
                        # loaded machine the client can leave one idle past the server's keep-alive): the
                        # client never learns the outcome, so it sends the same decision_id again, as for a 503.
                        lost.append(f"burst-{i}")
                        return
                statuses.append(response.status_code)
                if response.status_code == 200:
                    acknowledged.append(f"burst-{i}")
                    if len(acknowledged) == kill_after:
                        os.kill(service.pid, signal.SIGKILL)
                elif "may have been logged or not" in response.json()["message"]:
                    assert f"decision_id 'burst-{i}'" in response.json()["message"]
                    unknown.append(f"burst-{i}")

            await asyncio.gather(*(one(i) for i in range(n)))

    asyncio.run(burst(2000, kill_after=1000))
    assert set(statuses) <= {200, 503} and statuses.count(503) > 0 and unknown
    with server.runtime.sessions() as session:
        stored = set(session.scalars(select(Decision.decision_id)))
    assert set(acknowledged) <= stored, f"{len(set(acknowledged) - stored)} acknowledged decisions were lost"
    wait_until(service.available)
    with server.client() as client:
        retried = [client.post("/v1/decisions", json={**BODY, "decision_id": i}) for i in unknown + lost]
    assert [r.status_code for r in retried] == [200] * len(unknown + lost)
    assert len(lost) < 100, f"{len(lost)} requests lost their connection"


def test_the_decision_process_answers_malformed_requests_and_closes_on_garbage(tmp_path: Path) -> None:
    """The protocol seen from a serving process: a real decision process on a real socket pair."""
    ours, theirs = socket.socketpair()
    with theirs:
        command = [sys.executable, "-m", "banditgate.service.decision_process", str(theirs.fileno())]
        child = subprocess.Popen(command, pass_fds=(theirs.fileno(),), stderr=subprocess.PIPE)
    reader = FrameReader()

    def ask(*messages: list) -> list:
        ours.sendall(b"".join(frame(message) for message in messages))
        replies: list = []
        while len(replies) < len(messages):
            data = ours.recv(65536)
            assert data, "the decision process closed the socket"
            replies += reader.feed(data)
        return sorted(replies)

    try:
        ours.settimeout(60)
        settings = Settings(database_url=f"sqlite:///{tmp_path / 'ledger.db'}", artifact_dir=tmp_path / "art")
        assert ask([1, "start", settings.model_dump(mode="json", exclude={"api_key"})])[0][1] == "ok"
        decide = [3, "decide", "tx-1", None, None, {"amount_eur": 1.0}, [{"id": "a", "features": {}}]]
        replies = ask([1, "decide"], [2, "teleport"], decide)
        assert replies[0][:3] == [1, "error", 400] and "decide" in replies[0][3]
        assert replies[1] == [2, "error", 400, "unknown operation 'teleport'"]
        assert replies[2][:2] == [3, "ok"] and replies[2][2][0] == 200
        ours.sendall(b"\x00\x00\x00\x02{[")  # not JSON: it stops reading and exits
        assert ours.recv(1) == b""
        assert child.wait(timeout=30) == 0
        assert b"unreadable message from the serving process" in child.stderr.read()
    finally:
        ours.close()
        if child.poll() is None:
            child.kill()
        child.wait()
