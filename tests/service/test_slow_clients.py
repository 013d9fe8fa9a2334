"""Slow and greedy clients over real sockets: a request head must arrive within ``http_header_timeout_seconds``
and ``http_max_header_bytes``, idle kept-alive connections close, and normal clients are unaffected.

uvicorn on its own has no such deadline: a connection that trickles its headers (or sends nothing) is held
for as long as the client likes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from banditgate.service.settings import Settings
from tests.support.server import LiveServer, free_port

HEADER_TIMEOUT = 1.5
#: Room for a loaded machine: a deadline may fire this much late, never early.
SLACK = 10.0
HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: trickle\r\nAccept: */*\r\n\r\n"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the connection handling does not depend on the ledger's database."""
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"http_header_timeout_seconds": HEADER_TIMEOUT, "http_keep_alive_seconds": 3})


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=HEADER_TIMEOUT + SLACK)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def trickle(sock: socket.socket, data: bytes, interval: float, stop: threading.Event) -> None:
    """Send ``data`` one byte every ``interval`` seconds until it is sent, the server closes, or ``stop``."""
    for i in range(len(data)):
        if stop.wait(interval):
            return
        try:
            sock.sendall(data[i : i + 1])
        except OSError:  # closed by the server: what the test waits for
            return


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_trickled_headers_are_cut_off_at_the_deadline(server: LiveServer, stop: threading.Event) -> None:
    """Headers sent one byte every 0.5 s (the head would take 36 s) get a 408 and a close after the deadline."""
    with connect(server.port) as sock:
        started = time.monotonic()
        threading.Thread(target=trickle, args=(sock, HEAD, 0.5, stop), daemon=True).start()
        answer = read_until_closed(sock)
        held = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert HEADER_TIMEOUT - 0.1 <= held <= HEADER_TIMEOUT + SLACK, held


def test_a_silent_connection_is_closed_at_the_deadline(server: LiveServer) -> None:
    """A connection that sends nothing at all is closed too (uvicorn alone keeps it forever)."""
    with connect(server.port) as sock:
        started = time.monotonic()
        answer = read_until_closed(sock)
        held = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert HEADER_TIMEOUT - 0.1 <= held <= HEADER_TIMEOUT + SLACK, held


def test_an_oversized_head_gets_431(server: LiveServer) -> None:
    """A request head over ``http_max_header_bytes`` is refused with 431 and the connection closed."""
    limit = server.settings.http_max_header_bytes
    with connect(server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(limit // 1000 + 2):
                sock.sendall(b"X-Padding: " + b"p" * 1000 + b"\r\n")
        except OSError:  # the server may close before everything is sent
            pass
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_normal_clients_are_unaffected(server: LiveServer, stop: threading.Event) -> None:
    """While 50 connections trickle their headers, a client gets decisions; a kept-alive connection serves
    requests spread over more than the header deadline, and a head sent in pieces in time is served."""
    tricklers = [connect(server.port) for _ in range(50)]
    try:
        for sock in tricklers:
            threading.Thread(target=trickle, args=(sock, HEAD, 0.5, stop), daemon=True).start()
        with server.client() as client:
            started = time.monotonic()
            while time.monotonic() - started < HEADER_TIMEOUT * 2:  # kept alive across the deadline
                response = client.post("/v1/decisions", json={"context": {"a": 1}, "actions": [{"id": "x"}]})
                assert response.status_code == 200, response.text
                time.sleep(0.3)
        with connect(server.port) as sock:
            for piece in (HEAD[:10], HEAD[10:30], HEAD[30:]):
                sock.sendall(piece)
                time.sleep(HEADER_TIMEOUT / 4)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    finally:
        stop.set()
        for sock in tricklers:
            sock.close()


@pytest.mark.slow
def test_banditgate_serve_applies_the_limits(tmp_path: Path) -> None:
    """``banditgate serve`` passes the settings to uvicorn: a silent connection is closed after
    ``BANDITGATE_HTTP_HEADER_TIMEOUT_SECONDS``, while ``/healthz`` answers."""
    port = free_port()
    env = {
        **os.environ,
        "BANDITGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "BANDITGATE_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "BANDITGATE_HTTP_HEADER_TIMEOUT_SECONDS": "1",
        "BANDITGATE_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "banditgate.service.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "banditgate serve did not start"
            time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port), timeout=1 + SLACK) as sock:
            started = time.monotonic()
            answer = read_until_closed(sock)
            held = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert 0.9 <= held <= 1 + SLACK, held
    finally:
        process.terminate()
        process.wait(timeout=60)
