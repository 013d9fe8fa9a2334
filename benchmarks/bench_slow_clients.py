"""Slow clients against a real server: N connections send their request heads one byte a second.

Two servers on the same code and a fresh SQLite ledger each, one after the other:

- ``uvicorn``: the app under uvicorn's defaults, the way ``banditgate serve`` ran it before it had HTTP
  limits (uvicorn has a keep-alive timeout but no deadline for a request head);
- ``banditgate serve``: with its settings (``http_header_timeout_seconds`` 10 by default).

For each, N connections trickle ``GET /healthz`` headers (94 bytes: 94 s to complete) and the script
records how long the server holds each one (until it closes it, or ``--cap`` seconds); meanwhile one
normal client posts decisions back to back and records their statuses and latencies.

    python benchmarks/bench_slow_clients.py               # N = 500, about 2 minutes
    python benchmarks/bench_slow_clients.py --connections 200 --cap 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import environment, table, write_results

HEAD = (
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow-client-benchmark/1.0\r\n"
    b"Accept: application/json\r\n\r\n"
)
DECISION = {"context": {"amount_eur": 42.0, "issuer_country": "NL"}, "actions": [{"id": "a"}, {"id": "b"}]}
#: The app under uvicorn's defaults: what ``banditgate serve`` ran before it passed HTTP limits to uvicorn.
PLAIN_UVICORN = """
import sys, uvicorn
from banditgate.service.runtime import prepare_ledger
from banditgate.service.settings import Settings
prepare_ledger(Settings())
uvicorn.run("banditgate.service.app:create_app", factory=True, host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning", access_log=False)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kind: str, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "BANDITGATE_DATABASE_URL": f"sqlite:///{folder / 'ledger.db'}",
        "BANDITGATE_ARTIFACT_DIR": str(folder / "artifacts"),
        "BANDITGATE_LOG_LEVEL": "WARNING",
    }
    if kind == "uvicorn":
        command = [sys.executable, "-c", PLAIN_UVICORN, str(port)]
    else:
        command = [sys.executable, "-m", "banditgate.service.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return process, port
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{kind} did not start")


async def trickle(port: int, cap: float) -> float | None:
    """Seconds until the server closed the connection, or None if it was still open after ``cap``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def send() -> None:
        try:
            for byte in HEAD:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1.0)
        except OSError:  # closed by the server
            pass

    sender = asyncio.create_task(send())
    try:
        await asyncio.wait_for(reader.read(), timeout=cap)  # until the server closes
        return time.monotonic() - started
    except TimeoutError:
        return None
    except OSError:
        return time.monotonic() - started
    finally:
        sender.cancel()
        writer.close()


async def normal_client(port: int, until: asyncio.Event) -> tuple[list[int], list[float]]:
    statuses: list[int] = []
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        while not until.is_set():
            started = time.perf_counter()
            try:
                statuses.append((await client.post("/v1/decisions", json=DECISION)).status_code)
            except httpx.HTTPError:
                statuses.append(0)
            latencies.append(time.perf_counter() - started)
    return statuses, latencies


async def measure(port: int, connections: int, cap: float) -> dict[str, Any]:
    done = asyncio.Event()
    client = asyncio.create_task(normal_client(port, done))
    tricklers = []
    for _ in range(connections):  # open them a few at a time, the way a slow attacker would not bother to
        tricklers.append(asyncio.create_task(trickle(port, cap)))
        await asyncio.sleep(0.002)
    held = await asyncio.gather(*tricklers)
    done.set()
    statuses, latencies = await client
    closed = np.array([h for h in held if h is not None])
    ms = np.array(latencies) * 1000
    return {
        "connections": connections,
        "cap_seconds": cap,
        "closed_by_server": len(closed),
        "still_open_at_cap": sum(h is None for h in held),
        "held_seconds_p50": float(np.median(closed)) if len(closed) else None,
        "held_seconds_max": float(closed.max()) if len(closed) else None,
        "normal_requests": len(statuses),
        "normal_200": statuses.count(200),
        "normal_503": statuses.count(503),
        "normal_failed": sum(s not in (200, 503) for s in statuses),
        "normal_p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "normal_p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=500, help="trickling connections")
    parser.add_argument("--cap", type=float, default=40.0, help="seconds after which a connection counts as held")
    args = parser.parse_args()
    results: dict[str, Any] = {"environment": environment(), "servers": {}}
    for kind in ("uvicorn", "banditgate serve"):
        with tempfile.TemporaryDirectory() as folder:
            process, port = start_server(kind, Path(folder))
            try:
                results["servers"][kind] = asyncio.run(measure(port, args.connections, args.cap))
            finally:
                process.terminate()
                process.wait(timeout=60)
        print(kind, results["servers"][kind], flush=True)
    rows = [
        [
            kind,
            r["connections"],
            r["closed_by_server"],
            r["still_open_at_cap"],
            r["held_seconds_p50"] or "-",
            r["held_seconds_max"] or "-",
            r["normal_requests"],
            r["normal_200"],
            r["normal_503"] + r["normal_failed"],
            r["normal_p50_ms"],
            r["normal_p99_ms"],
        ]
        for kind, r in results["servers"].items()
    ]
    headers = ["server", "trickling", "closed", f"open at {args.cap:g} s", "held p50 s", "held max s"]
    headers += ["decisions", "200", "errors", "p50 ms", "p99 ms"]
    print(table(headers, rows))
    print(f"results: {write_results('bench_slow_clients', results)}")


if __name__ == "__main__":
    main()
