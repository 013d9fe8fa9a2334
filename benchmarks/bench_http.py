"""HTTP throughput and latency of ``POST /v1/decisions`` with durable SQLite logging, next to a bare endpoint.

What is measured
    Requests per second, and wrk's latency percentiles, of two servers answering the same request body:

    * ``banditgate``: the real service, ``banditgate serve`` as a subprocess on a temporary SQLite ledger
      (``synchronous=FULL``: each group commit is fsynced before its responses are sent), with its default
      settings: an HTTP process that parses and answers, and the decision process it starts, which decides
      and logs. Its policy
      ``default`` serves generation 1, a LightGBM oracle of 100 trees trained here on synthetic decisions
      of the body's shape, with SquareCB and a 0.01 floor. The body has no ``decision_id``, so every request
      is a new decision: scored, drawn, logged, answered.
    * ``bare``: :mod:`benchmarks.bare_app`, a FastAPI endpoint that validates the same body with the same
      pydantic model and returns a fixed answer.

    Both run under uvicorn with the same settings (127.0.0.1, 1 worker, access log off, log level warning,
    uvicorn's default loop and HTTP parser) and are measured one after the other in the same run, in
    alternating rounds. After each banditgate run the rows added to the ``decisions`` table are compared with
    the 200 responses wrk counted: every acknowledged decision must be in the table (a few more rows are
    possible: requests in flight when wrk stops were logged but not counted).

How
    Load comes from ``wrk`` (Debian package ``wrk``) with a Lua script that posts the body: a fixed number of
    connections (closed loop: each connection sends its next request when the previous answer arrives), a
    short warm-up run, then the timed run. The throughput rounds use 32 connections (saturation: the latencies
    then include queueing behind the other connections); a last run per server with a single connection
    shows the latency of one request on an otherwise idle server. The server's CPU time per request is read
    from ``/proc`` too (both of banditgate's processes): it does not depend on how much CPU the load
    generator took. Before each run the script
    waits (up to ``--max-wait`` seconds) until other processes leave the machine idle, and it reports how many
    cores they used during each run.

    The machine has 2 cores shared by wrk and the server (and by anything else running), so absolute numbers
    are lower than on a dedicated server; the ratio between the two servers is the number to compare.

Target (docs/operations.md, "Performance targets"): banditgate's throughput >= 60% of the bare endpoint's; p99 reported.

With ``--kafka``, a third server runs in the same rounds: ``banditgate serve`` with the Kafka transport
(``BANDITGATE_KAFKA_BOOTSTRAP_SERVERS``: the same ledger for its policies, decisions logged to an outbox file
of its own and published by its relay) against a Tansu broker on 127.0.0.1 (the tests' broker, from the test
extra). Its acknowledged decisions are counted in the outbox, and after the last run the script waits for
the relay to publish them all. Target (issue 12): its ratio to bare at least the embedded ratio minus 5 points.

Run: ``python benchmarks/bench_http.py [--quick] [--kafka]``; results go to ``benchmarks/results/bench_http.json``
(``bench_http_kafka.json`` with ``--kafka``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from workload import (
    REPO_DIR,
    Shape,
    child_pids,
    code_state,
    deploy_trained_policy,
    environment,
    machine_cpu_seconds,
    make_actions,
    make_context,
    process_cpu_seconds,
    record_code,
    table,
    train_oracle,
    wait_for_quiet,
    write_results,
)

NAME = "bench_http"
POLICY = "default"
HOST = "127.0.0.1"
TARGET_RATIO = 0.60
#: The Kafka transport's ratio to bare may be at most this far below the embedded transport's (issue 12).
KAFKA_TARGET_POINTS = 0.05
#: The request body's shape: about ten context fields, ten actions with two features each.
BODY_SHAPE = Shape(context_features=10, action_features=2, actions=10)
RUN_COLUMNS = [
    "run",
    "req/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "200s",
    "errors",
    "server CPU ms/req",
    "cores h+d/c/o",
]

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%(body)s]==]

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %%d, "duration_us": %%d, "bytes": %%d, ' ..
    '"errors": {"connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}, ' ..
    '"latency_us": {"min": %%d, "mean": %%.1f, "stdev": %%.1f, "p50": %%d, "p90": %%d, "p99": %%d, ' ..
    '"p99_9": %%d, "max": %%d}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max))
end
"""


@dataclass
class Server:
    """A server under test, run as a subprocess on 127.0.0.1."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    helpers: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, body: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """Start the server and wait until it answers the body with 200; return that first answer."""
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command, cwd=REPO_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=10.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    response = client.post(f"{self.url}/v1/decisions", json=body)
                except httpx.TransportError:
                    response = None
                if response is not None:
                    if response.status_code != 200:
                        raise RuntimeError(f"{self.name} answered {response.status_code}: {response.text[:500]}")
                    self.helpers = child_pids(self.process.pid)
                    return response.json()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s:\n{self.log_tail()}")
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, the way a supervisor stops it (uvicorn then shuts down gracefully); SIGKILL after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds of the server process and of the descendants it had once started (its decision process).

        The descendants are those found when the server first answered: a process restarted since would be
        missed, and one that exited would make the sum go down, so a run where that happens says so.
        """
        if self.process is None:
            return 0.0, 0.0
        helpers = [process_cpu_seconds(pid) for pid in self.helpers if Path(f"/proc/{pid}").exists()]
        if len(helpers) != len(self.helpers):
            print(f"warning: a process of {self.name} exited during the run; its CPU time is not counted")
        return process_cpu_seconds(self.process.pid), sum(helpers)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Run:
    """One timed wrk run against one server."""

    server: str
    label: str  # "1", "2", ...: a saturation round; "light": one connection
    connections: int
    seconds: float
    responses: int
    ok_200: int
    non_2xx: int
    socket_errors: dict[str, int]
    requests_per_s: float
    latency_ms: dict[str, float]
    server_cpu_ms_per_request: float
    server_cores: float  # the HTTP process and its decision process
    http_process_cores: float
    decision_process_cores: float
    client_cores: float
    other_cores: float
    decision_rows_added: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wrk_version(wrk: str) -> str:
    result = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    return (result.stdout + result.stderr).splitlines()[0].strip() if (result.stdout + result.stderr) else "unknown"


def run_wrk(wrk: str, script: Path, url: str, seconds: float, connections: int, threads: int) -> dict[str, Any]:
    """Run wrk and return the numbers its ``done`` hook printed, plus its text report."""
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        f"{url}/v1/decisions",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr}{result.stdout}")
    for line in result.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            data = json.loads(line.removeprefix("WRK_RESULT "))
            data["report"] = result.stdout.replace(line, "").strip()
            return data
    raise RuntimeError(f"wrk printed no result line:\n{result.stdout}\n{result.stderr}")


def wait_for_relay(server: Server, outbox: Path, timeout: float = 600.0) -> dict[str, Any]:
    """After the last run: how long the relay takes to publish what the Kafka server logged, and its state."""
    start = time.monotonic()
    with httpx.Client(timeout=10.0) as client:
        while True:
            transport = client.get(f"{server.url}/healthz").json()["transport"]
            if transport["backlog"] == 0 or time.monotonic() - start > timeout:
                break
            time.sleep(0.2)
    return {**transport, "seconds_to_drain_after_the_runs": time.monotonic() - start}


def count_decisions(database: Path) -> int:
    with sqlite3.connect(database, timeout=30) as connection:
        return int(connection.execute("SELECT count(*) FROM decisions").fetchone()[0])


def settled_count(database: Path, timeout: float = 10.0) -> int:
    """The row count once requests still in flight from the last wrk run have been logged (two equal readings)."""
    deadline = time.monotonic() + timeout
    previous = count_decisions(database)
    while True:
        time.sleep(0.25)
        current = count_decisions(database)
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current


def measure(server: Server, wrk: str, script: Path, seconds: float, connections: int, threads: int, label: str) -> Run:
    """One timed run, with the CPU time of the server, of wrk and of everything else over the same interval."""
    (http0, helpers0), busy0, children0 = server.cpu_seconds(), machine_cpu_seconds()[0], _children_cpu()
    data = run_wrk(wrk, script, server.url, seconds, connections, threads)
    (http1, helpers1), busy1, children1 = server.cpu_seconds(), machine_cpu_seconds()[0], _children_cpu()
    wall = data["duration_us"] / 1e6
    ok = data["requests"] - data["errors"]["status"]
    http_cpu, helpers_cpu = http1 - http0, helpers1 - helpers0
    server_cpu, client_cpu = http_cpu + helpers_cpu, children1 - children0
    other = max(0.0, (busy1 - busy0) - server_cpu - client_cpu)  # this script only sleeps while wrk runs
    latency = {k: v / 1000.0 for k, v in data["latency_us"].items()}
    return Run(
        server=server.name,
        label=label,
        connections=connections,
        seconds=wall,
        responses=data["requests"],
        ok_200=ok,
        non_2xx=data["errors"]["status"],
        socket_errors={k: v for k, v in data["errors"].items() if k != "status"},
        requests_per_s=ok / wall,
        latency_ms=latency,
        server_cpu_ms_per_request=server_cpu / max(1, data["requests"]) * 1000.0,
        server_cores=server_cpu / wall,
        client_cores=client_cpu / wall,
        other_cores=other / wall,
        http_process_cores=http_cpu / wall,
        decision_process_cores=helpers_cpu / wall,
        extra={"wrk_report": data["report"]},
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build_servers(tmp: Path, database: Path, artifact_dir: Path, kafka: str | None = None) -> dict[str, Server]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITGATE_")}
    base_env["PYTHONUNBUFFERED"] = "1"
    service_env = {
        **base_env,
        "BANDITGATE_DATABASE_URL": f"sqlite:///{database}",
        "BANDITGATE_ARTIFACT_DIR": str(artifact_dir),
        "BANDITGATE_DEFAULT_POLICY": POLICY,
        "BANDITGATE_LOG_LEVEL": "WARNING",
    }
    banditgate = shutil.which("banditgate", path=str(Path(sys.executable).parent)) or shutil.which("banditgate")
    if banditgate is None:
        raise SystemExit("the banditgate command is not installed: pip install -e '.[test]'")
    service_port, bare_port, kafka_port = free_port(), free_port(), free_port()
    uvicorn_settings = ["--host", HOST, "--workers", "1", "--log-level", "warning", "--no-access-log"]
    bare_app = [sys.executable, "-m", "uvicorn", "benchmarks.bare_app:app", "--app-dir", str(REPO_DIR)]
    servers = {
        "bare": Server(
            "bare",
            [*bare_app, "--port", str(bare_port), *uvicorn_settings],
            base_env,
            tmp / "bare.log",
            bare_port,
        ),
        # `banditgate serve` runs uvicorn with access_log=False and the settings' log level (WARNING here).
        "banditgate": Server(
            "banditgate",
            [banditgate, "serve", "--host", HOST, "--port", str(service_port), "--workers", "1"],
            service_env,
            tmp / "banditgate.log",
            service_port,
        ),
    }
    if kafka is not None:
        # The same ledger for its policies; decisions go to an outbox of its own and from there to the broker.
        servers["banditgate-kafka"] = Server(
            "banditgate-kafka",
            [banditgate, "serve", "--host", HOST, "--port", str(kafka_port), "--workers", "1"],
            {
                **service_env,
                "BANDITGATE_KAFKA_BOOTSTRAP_SERVERS": kafka,
                "BANDITGATE_OUTBOX_PATH": str(tmp / "outbox.db"),
                "BANDITGATE_KAFKA_DECISIONS_TOPIC": f"bench-decisions-{kafka_port}",
                "BANDITGATE_KAFKA_REWARDS_TOPIC": f"bench-rewards-{kafka_port}",
            },
            tmp / "banditgate-kafka.log",
            kafka_port,
        )
    return servers


def summarise(runs: list[Run], name: str) -> dict[str, Any]:
    """Throughput over all timed runs of a server (total 200s / total seconds) and the mean of its percentiles."""
    mine = [r for r in runs if r.server == name and r.label != "light"]
    light = [r for r in runs if r.server == name and r.label == "light"]
    return {
        "connections": mine[0].connections,
        "runs": len(mine),
        "requests_per_s": sum(r.ok_200 for r in mine) / sum(r.seconds for r in mine),
        "p50_ms": float(np.mean([r.latency_ms["p50"] for r in mine])),
        "p90_ms": float(np.mean([r.latency_ms["p90"] for r in mine])),
        "p99_ms": float(np.mean([r.latency_ms["p99"] for r in mine])),
        "max_ms": float(max(r.latency_ms["max"] for r in mine)),
        "server_cpu_ms_per_request": float(np.mean([r.server_cpu_ms_per_request for r in mine])),
        "ok_200": sum(r.ok_200 for r in mine),
        "errors": sum(r.non_2xx + sum(r.socket_errors.values()) for r in mine),
        "one_connection": {
            "requests_per_s": light[0].requests_per_s,
            "p50_ms": light[0].latency_ms["p50"],
            "p99_ms": light[0].latency_ms["p99"],
        }
        if light
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 5 s per server after a 1 s warm-up")
    parser.add_argument("--duration", type=float, default=None, help="seconds per timed run (default 20)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up per run (default 3)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds per server (default 2)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-wait", type=float, default=120.0, help="seconds to wait for an idle machine")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--kafka",
        action="store_true",
        help="also measure banditgate with the Kafka transport (outbox and relay) against a Tansu broker on "
        "127.0.0.1 (the tests' broker, from the test extra), in the same rounds",
    )
    args = parser.parse_args(argv)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    duration = args.duration or (5.0 if args.quick else 20.0)
    warmup = args.warmup or (1.0 if args.quick else 3.0)
    rounds = args.rounds or (1 if args.quick else 2)
    light = 3.0 if args.quick else 10.0

    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")

    rng = np.random.default_rng(args.seed)
    body = {"context": make_context(rng, BODY_SHAPE), "actions": make_actions(rng, BODY_SHAPE)}
    body_json = json.dumps(body, separators=(",", ":"))
    training_rows = 5_000 if args.quick else 20_000

    with tempfile.TemporaryDirectory(prefix="banditgate-bench-http-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        broker = None
        if args.kafka:
            sys.path.insert(0, str(REPO_DIR))
            from tests.support.kafka import kafka_broker

            broker = stack.enter_context(kafka_broker(tmp))
        database, artifact_dir = tmp / "ledger.db", tmp / "artifacts"
        print(f"training LightGBMOracle(num_boost_round=100) on {training_rows:,} decisions of the body's shape ...")
        oracle = train_oracle(BODY_SHAPE, rows=training_rows, num_boost_round=100, seed=args.seed)
        ledger = deploy_trained_policy(f"sqlite:///{database}", artifact_dir, POLICY, oracle)
        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT % {"body": body_json})
        servers = build_servers(tmp, database, artifact_dir, broker.bootstrap_servers if broker else None)
        logs = {"banditgate": database, "banditgate-kafka": tmp / "outbox.db"}  # where each logs its decisions

        background = wait_for_quiet(args.max_wait)
        runs: list[Run] = []
        all_ok_200 = 0  # every 200 the service sent, warm-ups included, for the final row count
        kafka_ok_200 = 0
        drain: dict[str, Any] | None = None
        try:
            code_before_start = code_state()  # the servers import banditgate now: that is the code measured
            first = {name: server.start(body) for name, server in servers.items()}
            code_after_start = code_state()
            all_ok_200 += 1
            if not servers["banditgate"].helpers:
                print("warning: banditgate's decision process was not found under /proc: its CPU is not counted")
            all_ok_200 += "banditgate-kafka" in first
            for name in ("banditgate", "banditgate-kafka"):
                answer = first.get(name, first["banditgate"])
                if answer["generation"] != ledger.generation or answer["exploration"] != "squarecb":
                    raise SystemExit(f"{name} does not serve the trained generation: {answer}")
            print(f"banditgate answers with generation {answer['generation']} ({answer['exploration']}): ok")
            # Saturation rounds (alternating servers), then one light-load run per server: one connection, so
            # the latency is the service time without queueing behind 31 other requests.
            phases = [(str(n), args.connections, args.threads, duration) for n in range(1, rounds + 1)]
            phases.append(("light", 1, 1, light))
            for label, connections, threads, seconds in phases:
                for name, server in servers.items():
                    wait_for_quiet(args.max_wait)
                    print(f"{name}, run {label}: {connections} connection(s), {warmup:.0f} s warm-up, {seconds:.0f} s")
                    warm = run_wrk(wrk, script, server.url, warmup, connections, threads)
                    rows_before = settled_count(logs[name]) if name in logs else 0
                    run = measure(server, wrk, script, seconds, connections, threads, label)
                    if name in logs:
                        ok = warm["requests"] - warm["errors"]["status"] + run.ok_200
                        all_ok_200 += ok
                        kafka_ok_200 += ok if name == "banditgate-kafka" else 0
                        run.decision_rows_added = settled_count(logs[name]) - rows_before
                    runs.append(run)
            if broker is not None:
                drain = wait_for_relay(servers["banditgate-kafka"], logs["banditgate-kafka"])
        finally:
            for server in servers.values():
                server.stop()
        log_tails = {name: server.log_tail(10) for name, server in servers.items()}
        total_rows = sum(count_decisions(logs[name]) for name in servers if name in logs)

    # Report.
    env = environment({"wrk": wrk_version(wrk)})
    record_code(env, code_before_start, code_after_start)
    env["started"] = started
    bare, service = summarise(runs, "bare"), summarise(runs, "banditgate")
    ratio = service["requests_per_s"] / bare["requests_per_s"]
    met = ratio >= TARGET_RATIO
    rows_ok = all(r.decision_rows_added is None or r.decision_rows_added >= r.ok_200 for r in runs)
    rows_ok = rows_ok and total_rows >= all_ok_200
    kafka = summarise(runs, "banditgate-kafka") if args.kafka else None
    kafka_ratio = kafka["requests_per_s"] / bare["requests_per_s"] if kafka else None
    kafka_met = kafka_ratio >= ratio - KAFKA_TARGET_POINTS if kafka_ratio is not None else None
    delivered_ok = drain is None or (drain["backlog"] == 0 and drain["delivered_through"] >= kafka_ok_200)

    print()
    print(
        f"POST /v1/decisions over HTTP: wrk {args.threads} threads, {args.connections} connections, "
        f"{duration:.0f} s per run after {warmup:.0f} s warm-up, {rounds} round(s), body {len(body_json)} bytes "
        f"({BODY_SHAPE.context_features} context fields, {BODY_SHAPE.actions} actions x "
        f"{BODY_SHAPE.action_features} features)"
    )
    print(
        f"machine: {env['machine']['cpu_model']}, {env['machine']['cpu_count']} cores SHARED by wrk and the server "
        f"(and anything else running: {background:.2f} cores busy before the start)"
    )
    print()
    print(
        table(
            RUN_COLUMNS,
            [
                [
                    f"{r.server} #{r.label}",
                    r.requests_per_s,
                    r.latency_ms["p50"],
                    r.latency_ms["p90"],
                    r.latency_ms["p99"],
                    r.latency_ms["max"],
                    r.ok_200,
                    r.non_2xx + sum(r.socket_errors.values()),
                    r.server_cpu_ms_per_request,
                    f"{r.http_process_cores:.2f}+{r.decision_process_cores:.2f}"
                    f"/{r.client_cores:.2f}/{r.other_cores:.2f}",
                ]
                for r in runs
            ],
        )
    )
    print(
        "(cores h+d/c/o: cores used by the server's HTTP process + its decision process / by wrk / by other "
        "processes during the run; server CPU ms/req counts both server processes)"
    )
    print()
    print(
        table(
            ["server", "req/s", "p50 ms", "p99 ms", "server CPU ms/req", "1 conn: p50 ms", "1 conn: p99 ms"],
            [
                [
                    name,
                    s["requests_per_s"],
                    s["p50_ms"],
                    s["p99_ms"],
                    s["server_cpu_ms_per_request"],
                    s["one_connection"]["p50_ms"] if s["one_connection"] else "-",
                    s["one_connection"]["p99_ms"] if s["one_connection"] else "-",
                ]
                for name, s in (
                    ("bare FastAPI", bare),
                    ("banditgate (SQLite, durable)", service),
                    *((("banditgate (Kafka: outbox + relay)", kafka),) if kafka else ()),
                )
            ],
        )
    )
    print(f"(req/s, p50, p99: {args.connections} connections, mean over the rounds; 1 conn: a run with one connection)")
    print()
    print(
        f"throughput ratio banditgate / bare: {ratio:.0%} (target >= {TARGET_RATIO:.0%}: {'MET' if met else 'MISSED'})"
    )
    if kafka is not None and kafka_ratio is not None and drain is not None:
        print(
            f"throughput ratio banditgate with Kafka / bare: {kafka_ratio:.0%} (target >= the embedded ratio minus "
            f"{KAFKA_TARGET_POINTS:.0%} = {ratio - KAFKA_TARGET_POINTS:.0%}: {'MET' if kafka_met else 'MISSED'})"
        )
        print(
            f"relay: broker {drain['broker']}, {drain['delivered_through']:,} events acknowledged by the broker, "
            f"backlog {drain['backlog']:,} {drain['seconds_to_drain_after_the_runs']:.1f} s after the last run "
            f"({kafka_ok_200:,} responses 200: {'OK' if delivered_ok else 'NOT ALL DELIVERED'})"
        )
    cpu_ratio = bare["server_cpu_ms_per_request"] / service["server_cpu_ms_per_request"]
    print(f"server CPU per request ratio bare / banditgate: {cpu_ratio:.0%}")
    for r in runs:
        if r.decision_rows_added is not None:
            print(
                f"durability, banditgate #{r.label}: wrk counted {r.ok_200:,} responses 200, "
                f"the decisions table gained {r.decision_rows_added:,} rows "
                f"({r.decision_rows_added - r.ok_200:+,}: requests in flight when wrk stopped, at most "
                f"{r.connections})"
            )
    print(
        f"durability, whole run: {all_ok_200:,} responses 200 (warm-ups included), {total_rows:,} rows: "
        f"{'OK' if rows_ok else 'ROWS MISSING'}"
    )

    results = {
        "benchmark": NAME,
        "quick": args.quick,
        **env,
        "note": "2 cores shared by the load generator (wrk) and the server under test",
        "background_cores_before": background,
        "setup": {
            "load_generator": f"wrk, {args.threads} threads, {args.connections} connections, closed loop",
            "duration_s": duration,
            "warmup_s": warmup,
            "rounds": rounds,
            "uvicorn": "127.0.0.1, 1 worker, access log off, log level warning, default loop and HTTP parser",
            "banditgate": "banditgate serve (an HTTP process and its decision process); SQLite ledger, "
            "synchronous=FULL, WAL; LightGBM 100 trees, squarecb",
            "bare": "python -m uvicorn benchmarks.bare_app:app (DecisionRequest in, fixed DecisionResponse out)",
            "body_bytes": len(body_json),
            "body": body,
        },
        "target": {"ratio": TARGET_RATIO, "met": met},
        "ratio": ratio,
        "summary": {"bare": bare, "banditgate": service, "banditgate-kafka": kafka},
        "kafka": None
        if kafka is None
        else {
            "ratio": kafka_ratio,
            "target": {"ratio_at_least": ratio - KAFKA_TARGET_POINTS, "met": kafka_met},
            "relay_after_the_runs": drain,
            "responses_200": kafka_ok_200,
            "delivered_ok": delivered_ok,
        },
        "runs": [{k: v for k, v in asdict(r).items() if k != "extra"} for r in runs],
        "durability": {"responses_200": all_ok_200, "decision_rows": total_rows, "ok": rows_ok},
        "wrk_reports": [r.extra["wrk_report"] for r in runs],
        "server_log_tails": log_tails,
    }
    path = write_results(f"{NAME}_kafka" if args.kafka else NAME, results)
    print(f"\nresults written to {path}")
    return 0 if rows_ok and delivered_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
