"""Gate evaluations computed off the serving processes, one at a time, in a worker process started on demand.

A gate evaluation reads tens of thousands of decisions, scores them and runs the drift tests: seconds of CPU
and hundreds of megabytes. Run inside a serving process it would take the CPU and the memory the decisions
need, so ``POST .../gate`` hands it to :class:`GateWorker`: a process of its own
(``python -m banditgate.service.gate_worker``, at a lower CPU priority), which reads the job as JSON on its
standard input, evaluates, stores the evaluation with its own database connection, writes the report as JSON
on its standard output and exits, giving its memory back. One job runs at a time per host (a lock file in
the artifact directory, shared by the ``--workers`` of one server); a request that finds the worker busy is
answered with :class:`GateBusy` (503 with ``Retry-After``), and one that takes longer than
``gate_timeout_seconds`` has its worker killed.

:func:`compute_gate` is the evaluation itself, shared with ``banditgate gate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.artifacts import ArtifactError
from banditgate.ledger.gate_evaluations import gate_history, store_gate_evaluation
from banditgate.ledger.promotion import UnknownGeneration
from banditgate.ledger.registry import UnknownPolicy

if TYPE_CHECKING:
    from banditgate.monitoring.gate import GateOptions, GateResult
    from banditgate.service.settings import Settings

log = logging.getLogger(__name__)

#: Niceness of the worker process: the decisions of the serving processes on the same host come first.
WORKER_NICENESS = 10
#: Retry-After of a busy worker before any job has been timed.
DEFAULT_RETRY_AFTER = 30


def compute_gate(
    sessions: sessionmaker[Session],
    artifact_dir: Path,
    policy: str,
    number: int,
    *,
    options: GateOptions,
    as_of: datetime | None = None,
    what_if: str | None = None,
    store: bool = True,
    drift_report: bool = True,
) -> GateResult:
    """Evaluate generation ``number`` of ``policy`` (alerts against its earlier evaluations), and store it.

    With ``store``, the report gets the stored row's id as ``evaluation_id``. ``drift_report`` keeps evidently's
    report of the drift tests in the result (for :func:`~banditgate.monitoring.report.write_gate_report`). Raises
    :class:`~banditgate.ledger.registry.UnknownPolicy`, :class:`~banditgate.ledger.promotion.UnknownGeneration`
    or :class:`~banditgate.ledger.artifacts.ArtifactError`.
    """
    import warnings

    from banditgate.monitoring.gate import evaluate_gate

    with sessions() as session:
        history = [row.report for row in gate_history(session, policy, number)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # evidently's pandas deprecations, not ours
            result = evaluate_gate(
                session,
                artifact_dir,
                policy,
                number,
                as_of=as_of,
                options=options,
                history=history,
                what_if=what_if,
                drift_report=drift_report,
            )
    if store:
        with sessions() as session, session.begin():
            result.report["evaluation_id"] = store_gate_evaluation(session, result.report).id
    return result


@dataclass(frozen=True)
class GateJob:
    """What the worker process evaluates: a generation, the policy's gate settings and the request's changes."""

    policy: str
    generation: int
    gate: dict[str, Any]  # the policy's GateSettings, as JSON
    as_of: str | None = None
    window_days: float | None = None
    what_if: str | None = None
    store: bool = True


class GateBusy(Exception):
    """Another gate evaluation is running on this host; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"a gate evaluation is already running on this server; retry in {retry_after} s")
        self.retry_after = retry_after


class GateJobFailed(Exception):
    """The worker could not evaluate: ``kind`` is ``unknown`` (policy or generation), ``artifact``, ``timeout``
    or ``failed``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class GateWorker:
    """Runs :class:`GateJob` s in a worker process, one at a time per host.

    Parameters
    ----------
    settings
        The serving process's settings: the database, the artifact directory and ``gate_timeout_seconds``.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = asyncio.Lock()
        self._last_seconds: float | None = None

    @property
    def busy(self) -> bool:
        """Whether this process is running a job (another serving process of the host may be, too)."""
        return self._lock.locked()

    @property
    def retry_after(self) -> int:
        """Seconds a refused request should wait: about as long as the last job took."""
        return DEFAULT_RETRY_AFTER if self._last_seconds is None else max(1, math.ceil(self._last_seconds))

    async def run(self, job: GateJob) -> dict[str, Any]:
        """Evaluate ``job`` in a worker process; return the report. Raises :class:`GateBusy` at once if a job
        is running, :class:`GateJobFailed` if it cannot be evaluated."""
        if self.busy:
            raise GateBusy(self.retry_after)
        async with self._lock:
            with self._host_lock() as acquired:
                if not acquired:
                    raise GateBusy(self.retry_after)
                started = time.monotonic()
                outcome = await self._spawn(job)
                self._last_seconds = time.monotonic() - started
        if "error" in outcome:
            raise GateJobFailed(outcome["error"], outcome["message"])
        return outcome["report"]

    @contextlib.contextmanager
    def _host_lock(self) -> Iterator[bool]:
        """An exclusive lock on ``<artifact_dir>/gate-cache/worker.lock`` if free (the other serving processes
        of the host share the file); released with the file, also when this process dies."""
        path = Path(self.settings.artifact_dir) / "gate-cache" / "worker.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True

    async def _spawn(self, job: GateJob) -> dict[str, Any]:
        payload = {
            "database_url": self.settings.database_url,
            "sqlite_synchronous": self.settings.sqlite_synchronous,
            "artifact_dir": str(self.settings.artifact_dir),
            "job": asdict(job),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "banditgate.service.gate_worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(
                process.communicate(json.dumps(payload).encode()), self.settings.gate_timeout_seconds
            )
        except TimeoutError:
            raise GateJobFailed(
                "timeout", f"the gate evaluation took over {self.settings.gate_timeout_seconds:g} s and was stopped"
            ) from None
        finally:
            # Also when the request is cancelled: no worker outlives the request that started it.
            if process.returncode is None:
                process.kill()
                await process.wait()
        try:
            return json.loads(stdout)
        except ValueError:
            tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            log.error("gate worker exited with %s: %s", process.returncode, stderr.decode(errors="replace"))
            return {"error": "failed", "message": f"the gate worker stopped (exit {process.returncode}): {tail[0]}"}


def _main() -> None:
    """Read a job on standard input, evaluate it, write ``{"report": ...}`` or ``{"error", "message"}``."""
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.stdout.write(json.dumps(run_job(json.load(sys.stdin)), default=str))


def run_job(payload: dict[str, Any]) -> dict[str, Any]:
    """The worker's work on a ``payload`` of :meth:`GateWorker._spawn`: ``{"report": ...}`` or ``{"error",
    "message"}``."""
    from banditgate.ledger.db import make_engine, make_sessionmaker
    from banditgate.service.settings import GateSettings

    job = GateJob(**payload["job"])
    engine = make_engine(payload["database_url"], sqlite_synchronous=payload["sqlite_synchronous"])
    try:
        changes = {} if job.window_days is None else {"window_days": job.window_days}
        result = compute_gate(
            make_sessionmaker(engine),
            Path(payload["artifact_dir"]),
            job.policy,
            job.generation,
            options=GateSettings.model_validate(job.gate).options(**changes),
            as_of=None if job.as_of is None else datetime.fromisoformat(job.as_of),
            what_if=job.what_if,
            store=job.store,
            drift_report=False,  # only the JSON report goes back: evidently's report would be built for nothing
        )
        outcome: dict[str, Any] = {"report": result.report}
    except (UnknownPolicy, UnknownGeneration) as exc:
        outcome = {"error": "unknown", "message": str(exc)}
    except ArtifactError as exc:
        outcome = {"error": "artifact", "message": str(exc)}
    except Exception as exc:
        log.exception("gate evaluation failed")
        outcome = {"error": "failed", "message": f"the gate evaluation failed: {type(exc).__name__}: {exc}"}
    finally:
        engine.dispose()
    return outcome


if __name__ == "__main__":
    _main()
