"""The serving process's side of the decision process: start it, forward to it, restart it if it dies.

With two cores, one Python process cannot both parse HTTP and decide at the rate the first alone allows
(the GIL serialises them): forwarding the validated request to a process of its own costs the serving
process a few microseconds, against the ~0.2 ms of CPU the decision and its logging take. Every reply comes
after the decision process committed the decision, so an answer still means a durable decision.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

from banditgate.ledger.decision_log import REFUSALS, UnknownDecision
from banditgate.ledger.outbox import BacklogFull
from banditgate.ledger.records import RewardResult
from banditgate.ledger.writer import WriterStopped
from banditgate.service import metrics
from banditgate.service.decision_ids import DecisionIds
from banditgate.service.decision_service import DecisionAsked, DecisionOutcome, DecisionService
from banditgate.service.decision_wire import (
    FrameProtocol,
    frame,
    outcome_from_wire,
    reward_from_wire,
    to_epoch_ms,
)
from banditgate.service.settings import Settings

log = logging.getLogger(__name__)
_IDS = DecisionIds()

#: Waits before restarting a decision process that died, in seconds: the next one each time it dies again
#: within :data:`STABLE_SECONDS` of its start, the first again once one ran that long. The first restart is
#: immediate: every request gets a 503 until it is done.
RESTART_DELAYS = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_SECONDS = 60.0


class DecisionProcessUnavailable(WriterStopped):
    """The decision process is not running (starting, restarting, or refusing): nothing was recorded."""


class OutcomeUnknown(WriterStopped):
    """The decision process died after the request was sent: it may have been recorded, or not.

    Sending the same request again (with the same ``decision_id``) is safe: a recorded decision is replayed,
    a recorded reward is a duplicate.
    """


class _NotFound(LookupError):
    """The decision process answered 404 (a reward for a decision it does not know)."""


class _Channel(FrameProtocol):
    """Requests out, replies matched to their requests by sequence number."""

    peer = "the decision process"

    def __init__(self) -> None:
        super().__init__()
        self._pending: dict[int, tuple[asyncio.Future[Any], float]] = {}  # by sequence: (reply, sent at)
        self._sequence = itertools.count(1)

    def connection_lost(self, exc: Exception | None) -> None:
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(OutcomeUnknown("the decision process stopped before it answered"))
        self._pending.clear()
        super().connection_lost(exc)

    def message_received(self, message: Any) -> None:
        future, _ = self._pending.pop(message[0], (None, 0.0))
        if future is not None and not future.done():
            future.set_result(message)

    def request(self, operation: str, *arguments: Any) -> asyncio.Future[Any]:
        if self.closed.done() or self._transport is None:
            raise DecisionProcessUnavailable("the decision process is not running; nothing was recorded")
        seq = next(self._sequence)
        message = frame([seq, operation, *arguments])
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending[seq] = (future, loop.time())
        self.write(message)
        return future

    def oldest_wait(self) -> float:
        """Seconds the oldest unanswered request has waited (0 if none is waiting)."""
        oldest = next(iter(self._pending.values()), None)
        return 0.0 if oldest is None else asyncio.get_running_loop().time() - oldest[1]


class ProcessDecisionService(DecisionService):
    """Forwards decisions and rewards to a decision process it starts, watches and restarts.

    Parameters
    ----------
    settings
        The serving process's settings; the decision process gets them (without the API key).
    start_timeout
        Seconds the decision process may take to start (import, load the deployed models) before start-up
        fails.

    A decision process that leaves a request unanswered for ``settings.decision_timeout_seconds`` (stuck on a
    database that does not answer, say) is killed and restarted: its requests get a 503 rather than waiting
    forever.

    With ``settings.decision_process_standby``, a second decision process waits beside the running one with
    the code and the deployed models' libraries imported (the seconds of a start on a loaded machine, most of
    them LightGBM's, scikit-learn's and pandas' imports): if the running one dies, the standby starts its
    runtime and takes over, and a new standby is prepared behind it.
    """

    def __init__(self, settings: Settings, start_timeout: float = 120.0) -> None:
        self.settings = settings
        self.start_timeout = start_timeout
        self.timeout = settings.decision_timeout_seconds
        self.restarts = 0
        self._channel: _Channel | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._standby: tuple[_Channel, subprocess.Popen[bytes]] | None = None
        self._standby_task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        """The running decision process's id."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def available(self) -> bool:
        return self._channel is not None and not self._channel.closed.done()

    async def start(self) -> None:
        self._channel, self._process = await self._spawn()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._supervisor, self._standby_task):
            if task is None:
                continue
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("the decision process supervisor had failed")
        if self._standby is not None:
            channel, process = self._standby
            self._standby = None
            channel.close()  # a standby never started its runtime: it exits at once
            await asyncio.to_thread(_wait_or_kill, process, 10.0)
        if self._channel is not None:
            self._channel.close()
        if self._process is not None:
            await asyncio.to_thread(_wait_or_kill, self._process, 60.0)

    async def decide(self, asked: DecisionAsked) -> DecisionOutcome:
        # The id is chosen here, so that a client can retry a decision whose outcome is unknown.
        decision_id = asked.decision_id or _IDS.next()
        now = None if asked.now is None else to_epoch_ms(asked.now)
        try:
            reply = await self._call("decide", decision_id, asked.policy, now, asked.context, asked.actions)
        except OutcomeUnknown as exc:
            raise OutcomeUnknown(
                f"{exc}: decision {decision_id!r} may have been logged or not; send the request again with "
                f"decision_id {decision_id!r} to get its answer"
            ) from None
        return outcome_from_wire(reply)

    async def log_reward(
        self, decision_id: str, kind: str, value: float, observed_at: datetime, received_at: datetime
    ) -> RewardResult:
        try:
            reply = await self._call("reward", decision_id, kind, value, observed_at, received_at)
        except _NotFound:
            raise UnknownDecision(decision_id) from None
        except OutcomeUnknown as exc:
            raise OutcomeUnknown(
                f"{exc}: the reward may have been recorded or not; post it again (once recorded, it is a duplicate)"
            ) from None
        return reward_from_wire(reply)

    async def refresh_policies(self) -> None:
        try:
            await self._call("refresh")
        except DecisionProcessUnavailable as exc:
            # The change is in the registry already; a decision process (re)starting loads it anyway.
            log.warning("decision process not refreshed (%s); it loads the current policies when it starts", exc)

    async def _call(self, operation: str, *arguments: Any) -> Any:
        channel = self._channel
        if channel is None:
            raise DecisionProcessUnavailable("the decision process is not running; nothing was recorded")
        reply = await channel.request(operation, *arguments)
        if reply[1] == "ok":
            return reply[2]
        status, message = reply[2], reply[3]
        if status == 404:
            raise _NotFound(message)
        if len(reply) > 4 and reply[4] == "BacklogFull":
            raise BacklogFull(message)
        refusal = REFUSALS.get(reply[4]) if len(reply) > 4 else None
        if refusal is not None:
            raise refusal(message)
        raise DecisionProcessUnavailable(f"the decision process could not serve the request: {message}")

    async def _spawn(self) -> tuple[_Channel, subprocess.Popen[bytes]]:
        """A started decision process: the standby if there is a live one, else a new process."""
        standby, self._standby = self._standby, None
        if standby is not None and (standby[0].closed.done() or standby[1].poll() is not None):
            log.warning("the standby decision process had exited; starting a new one")
            standby[0].close()
            await asyncio.to_thread(_wait_or_kill, standby[1], 5.0)
            standby = None
        channel, process = standby or await self._launch()
        await self._call_or_kill(channel, process, "start")
        log.info("decision process %d ready%s", process.pid, " (was the standby)" if standby else "")
        if self.settings.decision_process_standby and (self._standby_task is None or self._standby_task.done()):
            self._standby_task = asyncio.get_running_loop().create_task(self._prepare_standby())
        return channel, process

    async def _prepare_standby(self) -> None:
        """Launch the next decision process and have it import what serving the deployed policies needs."""
        try:
            channel, process = await self._launch()
            await self._call_or_kill(channel, process, "prepare")
        except Exception as exc:
            # No standby: a decision process that dies is replaced by a new one, which only takes longer.
            log.warning("no standby decision process (%s)", exc)
            return
        if self._stopping:
            channel.close()
            await asyncio.to_thread(_wait_or_kill, process, 5.0)
            return
        self._standby = channel, process
        log.info("standby decision process %d ready", process.pid)

    async def _launch(self) -> tuple[_Channel, subprocess.Popen[bytes]]:
        ours, theirs = socket.socketpair()
        with theirs:
            # A process group of its own: a terminal's Ctrl-C reaches only the serving process, which stops this
            # one in order (SIGINT could otherwise cut a start-up short, before it ignores the signal).
            process = subprocess.Popen(
                [sys.executable, "-m", "banditgate.service.decision_process", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                process_group=0,
            )
        channel = _Channel()
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: channel, ours)
        except BaseException:
            channel.close()
            await asyncio.to_thread(_wait_or_kill, process, 5.0)
            raise
        return channel, process

    async def _call_or_kill(self, channel: _Channel, process: subprocess.Popen[bytes], operation: str) -> None:
        """Send ``start`` or ``prepare`` with the settings; stop the process if it fails or does not answer."""
        try:
            settings = self.settings.model_dump(mode="json", exclude={"api_key"})
            reply = await asyncio.wait_for(channel.request(operation, settings), self.start_timeout)
            if reply[1] != "ok":
                raise RuntimeError(f"the decision process failed to {operation}: {reply[3]}")
        except OutcomeUnknown:
            code = await asyncio.to_thread(_wait_or_kill, process, 5.0)
            raise RuntimeError(f"the decision process exited while starting (code {code}); see its log") from None
        except BaseException:
            channel.close()
            await asyncio.to_thread(_wait_or_kill, process, 5.0)
            raise

    async def _supervise(self) -> None:
        attempt = 0
        while not self._stopping:
            assert self._channel is not None and self._process is not None
            started = time.monotonic()
            await self._watch(self._channel, self._process)
            code = await asyncio.to_thread(_wait_or_kill, self._process, 10.0)
            if self._stopping:
                return
            if time.monotonic() - started >= STABLE_SECONDS:
                attempt = 0
            log.error("decision process exited (code %s); restarting it", code)
            while True:
                await asyncio.sleep(RESTART_DELAYS[min(attempt, len(RESTART_DELAYS) - 1)])
                attempt += 1
                try:
                    self._channel, self._process = await self._spawn()
                except Exception as exc:
                    log.error("decision process failed to restart (%s); trying again", exc)
                    continue
                self.restarts += 1
                metrics.DECISION_PROCESS_RESTARTS.inc()
                break

    async def _watch(self, channel: _Channel, process: subprocess.Popen[bytes]) -> None:
        """Return when ``channel`` closes; kill ``process`` if it leaves a request unanswered too long."""
        while not channel.closed.done():
            await asyncio.wait([channel.closed], timeout=min(1.0, self.timeout / 4))
            waited = channel.oldest_wait()
            if waited > self.timeout and process.poll() is None:
                log.error("decision process %d left a request unanswered for %.1f s; killing it", process.pid, waited)
                process.kill()
                await channel.closed


def _wait_or_kill(process: subprocess.Popen[bytes], timeout: float) -> int:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.error("decision process %d did not stop within %.0f s; killing it", process.pid, timeout)
        process.kill()
        return process.wait()
