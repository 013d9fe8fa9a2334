"""Start-up and recovery of ``banditgate serve``: how fast a command, a worker and a decision process start.

Measures, on a ledger whose ``default`` policy deploys a trained LightGBM generation (the case where the
decision process imports LightGBM):

* ``banditgate --help``: wall time (median of ``--repeat`` runs), and which heavy libraries importing the
  CLI and the serving app (``banditgate.service.app``, what a uvicorn worker imports) pulls in;
* ``banditgate serve --workers W``: time until ``GET /healthz`` answers 200, then until a decision succeeds;
* recovery of a decision process: SIGKILL the running decision process of a one-worker server and time until
  a decision succeeds again (and how many requests got a 503 meanwhile), ``--kills`` times;
* worker restarts: over ``--watch`` seconds of a ``--workers W`` server, how many times uvicorn's supervisor
  replaced a worker (its "Child process [...] died" log lines).

``--load N`` runs N busy loops (``while True: pass``, each bounded to the run's length and killed at the end)
beside the server, as on a busy host. ``--code DIR`` measures the banditgate package under DIR instead of this
checkout (for a before/after comparison, e.g. ``git archive main | tar -x -C /tmp/old``); the ledger is built
with this checkout's code either way. Results go to ``benchmarks/results/bench_startup[_<label>].json``.

    python benchmarks/bench_startup.py                          # quiet: about a minute
    python benchmarks/bench_startup.py --load 6 --label load6   # busy host: about 4 minutes (2 min watching)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from workload import (
    REPO_DIR,
    Shape,
    background_cores,
    child_pids,
    deploy_trained_policy,
    environment,
    make_actions,
    make_context,
    table,
    train_oracle,
    write_results,
)

HOST = "127.0.0.1"
HEAVY = ("lightgbm", "sklearn", "scipy", "pandas", "matplotlib", "evidently", "river", "jinja2")
SHAPE = Shape(context_features=8, action_features=3, actions=4)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def busy_loops(n: int, seconds: float) -> Iterator[None]:
    """``n`` processes spinning on a core each, for at most ``seconds``; killed on exit."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    loops = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
        for loop in loops:
            loop.wait()


def code_env(code: Path, database_url: str, artifact_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITGATE_")}
    return {
        **env,
        "PYTHONPATH": str(code),
        "PYTHONUNBUFFERED": "1",
        "BANDITGATE_DATABASE_URL": database_url,
        "BANDITGATE_ARTIFACT_DIR": str(artifact_dir),
        "BANDITGATE_LOG_LEVEL": "INFO",
    }


def help_seconds(env: dict[str, str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "banditgate.service.cli", "--help"], env=env, check=True, capture_output=True
        )
        times.append(time.perf_counter() - started)
    return times


def heavy_modules(env: dict[str, str], module: str) -> list[str]:
    probe = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True)
    return out.stdout.split()


class Server:
    def __init__(self, env: dict[str, str], workers: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = log
        command = [sys.executable, "-m", "banditgate.service.cli", "serve", "--host", HOST, "--port", str(self.port)]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, "--workers", str(workers)], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.started = time.perf_counter()

    def wait_ready(self, body: dict[str, Any], timeout: float) -> tuple[float, float]:
        """Seconds from the start until /healthz answered 200, and until a decision succeeded."""
        healthy = None
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while time.perf_counter() - self.started < timeout:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited:\n{self.log.read_text()[-3000:]}")
                try:
                    if healthy is None and client.get("/healthz").status_code == 200:
                        healthy = time.perf_counter() - self.started
                    if healthy is not None and client.post("/v1/decisions", json=body).status_code == 200:
                        return healthy, time.perf_counter() - self.started
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"not ready within {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def decision_processes(self) -> list[int]:
        """The decision processes under the server, oldest first (a worker's running one before its standby)."""
        found = []
        for pid in child_pids(self.process.pid):
            try:
                if b"banditgate.service.decision_process" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append((int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]), pid))
            except (OSError, ValueError, IndexError):
                continue
        return [pid for _, pid in sorted(found)]

    def wait_for_standby(self, ready: int, timeout: float) -> None:
        """Wait until the server logged ``ready`` standby decision processes ready (none if the code has none)."""
        deadline = time.perf_counter() + timeout
        time.sleep(2.0)
        if len(self.decision_processes()) < 2:
            return  # code without a standby decision process
        while time.perf_counter() < deadline:
            if len(re.findall(r"standby decision process \d+ ready", self.log.read_text(errors="replace"))) >= ready:
                return
            time.sleep(0.2)
        raise RuntimeError(f"no standby decision process ready within {timeout:.0f} s")

    def worker_deaths(self) -> int:
        return len(re.findall(r"Child process \[\d+\] died", self.log.read_text(errors="replace")))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def recovery(server: Server, body: dict[str, Any], timeout: float) -> dict[str, float]:
    """SIGKILL the running decision process; time until a decision succeeds again, counting the 503s."""
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        assert client.post("/v1/decisions", json=body).status_code == 200
        victim = server.decision_processes()[0]
        os.kill(victim, signal.SIGKILL)
        killed = time.perf_counter()
        refused = 0
        while time.perf_counter() - killed < timeout:
            status = client.post("/v1/decisions", json=body).status_code
            if status == 200:
                back = time.perf_counter() - killed
                healthy = client.get("/healthz").json()["decisions"] == "ok"
                return {"seconds": round(back, 3), "refused_503": refused, "healthz_ok_after": healthy}
            refused += status == 503
            time.sleep(0.01)
    raise RuntimeError(f"the decision process did not come back within {timeout:.0f} s")


def summary(values: list[Any]) -> tuple[Any, Any]:
    """Median and minimum; "never" when a start or a recovery did not happen within the timeout."""
    if None in values:
        return "never", min((v for v in values if v is not None), default="never")
    return statistics.median(values), min(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, default=REPO_DIR, help="folder holding the banditgate package to measure")
    parser.add_argument("--label", default="", help="suffix of the results file (e.g. quiet, load6, before)")
    parser.add_argument("--load", type=int, default=0, help="busy loops running beside the server")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5, help="runs of --help and of the serve start-up")
    parser.add_argument("--kills", type=int, default=3, help="decision processes killed")
    parser.add_argument("--watch", type=float, default=120.0, help="seconds to count worker restarts (0: skip)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds a start or a recovery may take")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(3)
    body = {"context": make_context(rng, SHAPE), "actions": make_actions(rng, SHAPE)}
    results: dict[str, Any] = {
        **environment(),
        "code": str(args.code),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "background_cores_before": round(background_cores(2.0), 2),
    }
    with tempfile.TemporaryDirectory(prefix="banditgate-bench-startup-") as tmp_name:
        tmp = Path(tmp_name)
        database_url, artifact_dir = f"sqlite:///{tmp / 'ledger.db'}", tmp / "artifacts"
        deploy_trained_policy(database_url, artifact_dir, "default", train_oracle(SHAPE, 3000, seed=3))
        env = code_env(args.code, database_url, artifact_dir)
        longest = args.timeout * (args.repeat + args.kills + 2) + args.watch + 60
        with busy_loops(args.load, longest):
            results["help_seconds"] = [round(t, 3) for t in help_seconds(env, args.repeat)]
            results["heavy_modules"] = {
                m: heavy_modules(env, m) for m in ("banditgate.service.cli", "banditgate.service.app")
            }
            starts: list[dict[str, Any]] = []
            for i in range(args.repeat):
                server = Server(env, args.workers, tmp / f"serve-{i}.log")
                try:
                    healthy, decided = server.wait_ready(body, args.timeout)
                    start = {"healthz_seconds": round(healthy, 2), "decision_seconds": round(decided, 2)}
                except RuntimeError:  # it never answered: workers killed before they started, typically
                    start = {"healthz_seconds": None, "decision_seconds": None}
                finally:
                    server.stop()
                starts.append({**start, "worker_restarts": server.worker_deaths()})
            results["serve"] = starts
            server = Server(env, 1, tmp / "recovery.log")
            try:
                server.wait_ready(body, args.timeout)
                results["recovery"] = []
                for kill in range(args.kills):
                    server.wait_for_standby(kill + 1, args.timeout)
                    if kill == 0:  # the serving process, then its decision processes (running, standby)
                        pids = [server.process.pid, *server.decision_processes()]
                        results["rss_mib"] = [rss_mib(pid) for pid in pids]
                    results["recovery"].append(recovery(server, body, args.timeout))
            finally:
                server.stop()
            if args.watch > 0:
                server = Server(env, args.workers, tmp / "watch.log")
                try:
                    try:
                        server.wait_ready(body, args.timeout)
                        ready = True
                    except RuntimeError:
                        ready = False  # counted anyway: the restarts are why it never answered
                    before = server.worker_deaths()
                    time.sleep(args.watch)
                    results["worker_restarts"] = {
                        "seconds": args.watch,
                        "count": server.worker_deaths() - before,
                        "answered_before_watching": ready,
                    }
                finally:
                    server.stop()
    results["load_average_1m_after"] = os.getloadavg()[0]
    path = write_results("bench_startup" + (f"_{args.label}" if args.label else ""), results)

    measures = {
        "banditgate --help (s)": results["help_seconds"],
        "serve -> /healthz 200 (s)": [s["healthz_seconds"] for s in starts],
        "serve -> decision (s)": [s["decision_seconds"] for s in starts],
        "worker restarts while starting": [s["worker_restarts"] for s in starts],
        "decision process back (s)": [r["seconds"] for r in results["recovery"]],
        "503s while it was down": [r["refused_503"] for r in results["recovery"]],
    }
    rows = [[name, *summary(values)] for name, values in measures.items()]
    print(table(["measure", "median", "min"], rows))
    print(f"heavy modules imported: {results['heavy_modules']}")
    if "worker_restarts" in results:
        print(f"worker restarts in {args.watch:.0f} s: {results['worker_restarts']['count']}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
