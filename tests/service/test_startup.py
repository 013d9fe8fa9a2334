"""Start-up of the command line, of ``banditgate serve``'s workers and of their decision processes.

A worker of ``serve --workers N`` re-imports the command line and imports the serving app; uvicorn's
supervisor kills one that does not answer its health check in time, so what they import at start-up decides
whether a busy host crash-loops. Timings belong in ``benchmarks/bench_startup.py``; these tests check what is
imported, which processes load the models, and that the supervisor and the decision process standby behave.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from banditgate.ledger import registry
from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.migrate import upgrade
from tests.service.helpers import ACTIONS, train_oracle
from tests.support.server import free_port

#: Libraries that take seconds to import on a loaded machine and that no start-up path needs.
HEAVY = ("lightgbm", "sklearn", "scipy", "pandas", "matplotlib", "evidently", "river", "jinja2")
BODY = {"context": {"amount_eur": 120.0, "issuer_country": "NL"}, "actions": ACTIONS}


@pytest.mark.parametrize(
    "module",
    [
        "banditgate.service.cli",  # every command line, and every worker of serve --workers N (re-imported)
        "banditgate.service.app",  # what a uvicorn worker imports to serve
        "banditgate.service.decision_process",  # before it loads the deployed policies
    ],
)
def test_start_up_modules_import_no_heavy_library(module: str) -> None:
    probe = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], f"importing {module} imports {result.stdout.strip()}"


@pytest.mark.parametrize("oracle", ['"lightgbm"', '"sklearn"\noracle_params = { estimator = "ridge" }', '"river"'])
def test_settings_with_any_oracle_import_no_heavy_library(oracle: str, tmp_path: Path) -> None:
    # Every serving process validates the configured policies when it loads its settings: that builds each
    # policy's (unfitted) oracle, which must not import its library or pandas before it trains or loads a model.
    config = tmp_path / "banditgate.toml"
    config.write_text(f'[policies.default]\nexploration = "squarecb"\noracle = {oracle}\n')
    probe = (
        "import os, sys\n"
        f"os.environ['BANDITGATE_CONFIG'] = {str(config)!r}\n"
        "from banditgate.service.settings import Settings\n"
        "print(Settings().policies['default'].oracle)\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    kind, *heavy = result.stdout.split()
    assert kind == oracle.split('"')[1] and heavy == [], f"settings naming {oracle} import {' '.join(heavy)}"


def test_help_imports_no_heavy_library() -> None:
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['banditgate', '--help']\n"
        "try:\n"
        "    runpy.run_module('banditgate.service.cli', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('HEAVY:', ' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert "Usage" in result.stdout, result.stdout + result.stderr
    assert result.stdout.rsplit("HEAVY:", 1)[1].split() == []


def _deploy_trained_generation(database_url: str, artifact_dir: Path) -> None:
    """A ledger whose default policy deploys a trained LightGBM generation, as after a promotion."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        oracle = train_oracle(n=1000)
        with make_sessionmaker(engine).begin() as session:
            registry.put_policy(session, "default", registry.PolicySpec(), actor="test", reason="test")
            path, digest = registry.store_artifact(artifact_dir, "default", 1, oracle.to_bytes())
            generation = registry.register_generation(
                session,
                "default",
                artifact_path=path,
                artifact_sha256=digest,
                oracle=oracle.kind,
                oracle_params=oracle.hyperparameters(),
                exploration="squarecb",
                exploration_params={"gamma": 100.0},
            )
            registry.deploy_generation(session, "default", generation.number, actor="test", reason="test")
    finally:
        engine.dispose()


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _started(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _workers(server: int) -> list[int]:
    return [pid for pid in _children(server) if b"spawn_main" in _cmdline(pid)]


def _decision_processes(worker: int) -> list[int]:
    """A worker's decision processes, oldest (the running one) first, then its standby."""
    found = [pid for pid in _children(worker) if b"banditgate.service.decision_process" in _cmdline(pid)]
    return sorted(found, key=_started)


def _maps_lightgbm(pid: int) -> bool:
    return "lib_lightgbm" in Path(f"/proc/{pid}/maps").read_text()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    """``banditgate serve --workers 2`` on a SQLite ledger with a trained generation deployed: the process,
    its stderr file and its URL."""
    database_url, artifact_dir = f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path / "artifacts"
    _deploy_trained_generation(database_url, artifact_dir)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BANDITGATE_")},
        "BANDITGATE_DATABASE_URL": database_url,
        "BANDITGATE_ARTIFACT_DIR": str(artifact_dir),
        "BANDITGATE_WORKER_HEALTHCHECK_TIMEOUT_SECONDS": "120",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        command = [sys.executable, "-m", "banditgate.service.cli", "serve", "--port", str(port), "--workers", "2"]
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=out)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

            def healthy() -> bool:
                assert server.poll() is None, log.read_text()
                try:
                    return client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    return False

            _wait(healthy, "the server answers /healthz")
        yield server, log, f"http://127.0.0.1:{port}"
    finally:
        for worker in _workers(server.pid):
            os.kill(worker, signal.SIGCONT)
        server.terminate()
        server.wait(timeout=120)


@pytest.mark.slow
def test_models_load_in_the_decision_processes_and_a_standby_takes_over(
    two_workers: tuple[subprocess.Popen[bytes], Path, str],
) -> None:
    server, _, url = two_workers
    workers = _workers(server.pid)
    assert len(workers) == 2
    _wait(lambda: all(len(_decision_processes(w)) == 2 for w in workers), "every worker has a standby")
    everyone = [pid for worker in workers for pid in _decision_processes(worker)]
    # The standbys have imported the models' library once they loaded the deployed policy.
    _wait(lambda: all(_maps_lightgbm(pid) for pid in everyone), "every decision process loaded LightGBM")
    assert not any(_maps_lightgbm(worker) for worker in workers), "a serving process loaded the models"

    worker = workers[0]
    running, standby = _decision_processes(worker)
    os.kill(running, signal.SIGKILL)
    # The standby becomes the running decision process, and a new standby is prepared behind it.
    _wait(lambda: len(_decision_processes(worker)) == 2 and running not in _decision_processes(worker), "restart")
    assert _decision_processes(worker)[0] == standby
    with httpx.Client(base_url=url, timeout=30) as client:
        # The standby starts its runtime (database, policies) when it takes over: on a loaded machine that takes
        # a moment, during which its worker answers 503 "nothing was recorded" and /healthz 503.
        _wait(lambda: all(client.get("/healthz").status_code == 200 for _ in range(4)), "both workers are healthy")
        answers = [client.post("/v1/decisions", json={**BODY, "decision_id": f"after-{i}"}) for i in range(20)]
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers if a.status_code != 200]


@pytest.mark.slow
def test_a_worker_slower_than_uvicorns_default_health_check_is_not_killed(
    two_workers: tuple[subprocess.Popen[bytes], Path, str],
) -> None:
    """uvicorn's own default (5 s) killed workers that a loaded machine kept from answering; the configured
    ``worker_healthcheck_timeout_seconds`` (120 s here) lets one that answers within it live."""
    server, log, _ = two_workers
    worker = _workers(server.pid)[1]
    os.kill(worker, signal.SIGSTOP)  # it answers no health check while stopped, like a worker starved of CPU
    time.sleep(8.0)
    os.kill(worker, signal.SIGCONT)
    time.sleep(2.0)
    assert worker in _workers(server.pid), "the supervisor killed a worker inside the configured timeout"
    assert "died" not in log.read_text(errors="replace")
