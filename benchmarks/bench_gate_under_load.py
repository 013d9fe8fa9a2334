"""Decisions while clients hammer the gate endpoints: throughput, latency and memory of the serving process.

What is measured
    ``banditgate serve`` (one worker, its decision process) on a SQLite ledger of simulated traffic with a
    trained candidate generation and one stored gate evaluation. Eight clients ask for decisions as fast as
    they are answered, for ``--seconds`` without other load (``quiet``), then for as long again while eight
    more clients loop over the gate endpoints without pausing, each sending ``POST .../gate`` then
    ``GET .../gate`` (the latest stored evaluation): first without the key (``open gate load``: what anyone
    who reaches the port can do; the POST gets 401), then with it (``admin gate load``: the POST is answered
    201 by the one request that gets the worker, 503 with ``Retry-After`` by the others while it runs).
    A control phase (``policy reads``) has the eight clients loop over ``GET /v1/policies/default`` instead:
    on a saturated machine any open endpoint hammered in a closed loop takes its share of the serving
    process, so the gate endpoints are judged against another cheap read.
    Reported per phase: decisions per second, p50 and p99 latency, the gate answers by status, and the peak
    resident memory of the serving process and of the gate worker processes it starts (sampled from ``/proc``
    every 50 ms).

Before gate evaluations moved to a worker process, ``GET .../gate`` computed one in the serving process for
anyone: eight such clients on a 94,000-decision ledger cut decision throughput by 64%, raised p99 six-fold
and the serving process's memory from 344 to 627 MB.

Run: ``python benchmarks/bench_gate_under_load.py [--decisions N] [--seconds S]``; results in
benchmarks/results/bench_gate_under_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS.parent))

from banditgate.pipelines.retrain import RetrainOptions, retrain  # noqa: E402
from banditgate.simulator import PaymentWorld  # noqa: E402
from tests.service.helpers import ACTIONS  # noqa: E402
from tests.support.ledger_fill import simulated_ledger  # noqa: E402
from tests.support.server import free_port  # noqa: E402

API_KEY = "bench-admin-key-0123456789"
CLIENTS = 8
DAYS = 30
DECISION = {"context": {"amount_eur": 20.0, "issuer_country": "NL"}, "actions": ACTIONS}
GATE = "/v1/policies/default/generations/1/gate"


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def gate_workers(server: int) -> list[int]:
    """Pids of the gate worker processes (children of the serving process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server and b"gate_worker" in command:
            found.append(int(entry.name))
    return found


class MemoryWatch:
    """Peak RSS of the serving process and of any one gate worker, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.server, self.worker = pid, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.server = max(self.server, rss_mb(self.pid))
            for worker in gate_workers(self.pid):
                self.worker = max(self.worker, rss_mb(worker))

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def phase(url: str, seconds: float, hammer: str | None) -> dict[str, Any]:
    """Decisions for ``seconds``; with ``hammer`` (``open`` or ``admin``: on the gate; ``policy``: on a policy's
    configuration), eight more clients."""
    latencies: list[float] = []
    errors = 0
    gate_answers: Counter[str] = Counter()
    end = time.perf_counter() + seconds

    async def decide(client: httpx.AsyncClient, worker: int) -> None:
        nonlocal errors
        for i in itertools.count():
            sent = time.perf_counter()
            if sent >= end:
                return
            try:
                body = {**DECISION, "decision_id": f"{hammer}-{worker}-{i}"}
                response = await client.post("/v1/decisions", json=body)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - sent)
            else:
                errors += 1

    requests = [("GET", "/v1/policies/default")] * 2 if hammer == "policy" else [("POST", GATE), ("GET", GATE)]

    async def gate(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < end:
            for method, path in requests:  # a client that ignores Retry-After
                try:
                    response = await client.request(method, path, json={} if method == "POST" else None)
                    gate_answers[f"{method} {response.status_code}"] += 1
                except httpx.HTTPError as exc:
                    gate_answers[f"{method} {type(exc).__name__}"] += 1

    limits = httpx.Limits(max_connections=CLIENTS * 2)
    async with (
        httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as deciders,
        httpx.AsyncClient(
            base_url=url, timeout=900, headers={"X-API-Key": API_KEY} if hammer == "admin" else {}, limits=limits
        ) as gaters,
    ):
        hammers = [asyncio.create_task(gate(gaters)) for _ in range(CLIENTS if hammer else 0)]
        started = time.perf_counter()
        await asyncio.gather(*(decide(deciders, w) for w in range(CLIENTS)))
        elapsed = time.perf_counter() - started
        for task in hammers:  # a POST still waiting for its evaluation is abandoned
            task.cancel()
        await asyncio.gather(*hammers, return_exceptions=True)
    ms = np.array(latencies) * 1000
    return {
        "decisions": len(latencies),
        "errors": errors,
        "decisions_per_second": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "gate_answers": dict(gate_answers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=94_000, help="decisions in the ledger")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="banditgate-gate-load-") as tmp_name:
        tmp = Path(tmp_name)
        world = PaymentWorld("none", seed=3, epoch=datetime.now(UTC) - timedelta(days=DAYS))
        options = RetrainOptions(as_of=world.epoch + timedelta(days=DAYS - 10), window=timedelta(days=14))
        started = time.perf_counter()
        env = simulated_ledger(
            tmp,
            world,
            days=DAYS,
            per_day=args.decisions // DAYS,
            seed=3,
            then=lambda sessions: retrain(sessions, tmp / "artifacts", "default", options),
        )
        print(f"ledger of {args.decisions:,} decisions and a candidate in {time.perf_counter() - started:.0f} s")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server_env = {**os.environ, **env, "BANDITGATE_API_KEY": API_KEY, "BANDITGATE_LOG_LEVEL": "WARNING"}
        command = [sys.executable, "-m", "banditgate.service.cli", "serve", "--port", str(port)]
        with (tmp / "server.log").open("wb") as log:
            server = subprocess.Popen(command, env=server_env, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 180
                while True:
                    try:
                        if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit((tmp / "server.log").read_text())
                    time.sleep(0.2)
                first = httpx.post(f"{url}{GATE}", json={}, headers={"X-API-Key": API_KEY}, timeout=900)
                assert first.status_code == 201, first.text
                print(f"first evaluation: {first.json()['level']}, {first.elapsed.total_seconds():.1f} s")
                results = {}
                phases = (
                    ("quiet", None),
                    ("policy reads", "policy"),
                    ("open gate load", "open"),
                    ("admin gate load", "admin"),
                )
                for name, hammer in phases:
                    with MemoryWatch(server.pid) as memory:
                        results[name] = asyncio.run(phase(url, args.seconds, hammer))
                    results[name]["peak_rss_mb"] = {"serving": memory.server, "gate_worker": memory.worker}
            finally:
                server.terminate()
                server.wait(timeout=60)

    quiet = results["quiet"]
    for name, r in results.items():
        print(
            f"{name:>15}: {r['decisions_per_second']:7.1f} decisions/s, p50 {r['p50_ms']:6.1f} ms, "
            f"p99 {r['p99_ms']:7.1f} ms, {r['errors']} errors; serving RSS {r['peak_rss_mb']['serving']:.0f} MB, "
            f"gate worker {r['peak_rss_mb']['gate_worker']:.0f} MB; gate answers {r['gate_answers']}"
        )
    change = {}
    for name in ("policy reads", "open gate load", "admin gate load"):
        loaded = results[name]
        change[name] = loaded["decisions_per_second"] / quiet["decisions_per_second"] - 1
        print(f"throughput under {name}: {change[name]:+.0%}; p99 x{loaded['p99_ms'] / quiet['p99_ms']:.1f}")
    out = BENCHMARKS / "results" / "bench_gate_under_load.json"
    out.write_text(
        json.dumps(
            {
                "decisions_in_ledger": args.decisions,
                "seconds_per_phase": args.seconds,
                "cpus": os.cpu_count(),
                "load_average_at_end": os.getloadavg(),
                "results": results,
                "throughput_change": change,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
