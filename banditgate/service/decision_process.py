"""The decision process: decides and logs on behalf of one serving process, on a core of its own.

A serving process with ``decision_process`` on (the default) starts one with
``python -m banditgate.service.decision_process FD``, FD being its end of a socket pair, and forwards every
decision and reward to it (:class:`~banditgate.service.decision_client.ProcessDecisionService`). The
serving process parses and validates HTTP requests and answers them; this process scores the candidates,
draws, and commits the decisions in group commits, then replies. Its first message is the serving
process's settings; it answers ``ready`` once its own runtime (ledger writer, policy cache) has started.
A standby decision process is first sent ``prepare`` instead: it loads the deployed policies once, to import
their models' libraries, and waits for ``start`` (when the running decision process dies).

Closing the socket stops it: it finishes the decisions it accepted (their commits complete even though
nobody is left to answer) and exits, so a killed serving process never leaves it behind. It ignores SIGINT
and SIGTERM, which a terminal's Ctrl-C and a service manager (systemd, by default) send to every process of
the service at once: the serving process shuts down gracefully and then closes the socket, so that no
decision in flight is cut short. SIGKILL still stops it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import uvloop
from sqlalchemy.exc import SQLAlchemyError

from banditgate.ledger import registry
from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.decision_log import RewardRefused, UnknownDecision
from banditgate.ledger.outbox import BacklogFull
from banditgate.policies.oracles import oracle_class
from banditgate.service.decision_service import DecisionAsked
from banditgate.service.decision_wire import (
    FrameProtocol,
    frame,
    from_epoch_ms,
    outcome_to_wire,
    reward_to_wire,
)
from banditgate.service.policy_cache import PolicyCache
from banditgate.service.runtime import Runtime
from banditgate.service.settings import Settings

log = logging.getLogger("banditgate.decision_process")


class _DecisionServer(FrameProtocol):
    peer = "the serving process"

    def __init__(self) -> None:
        super().__init__()
        self.runtime: Runtime | None = None
        self._replies: list[bytes] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._operations: dict[str, Callable[..., Awaitable[Any]]] = {
            "start": self._start,
            "prepare": self._prepare,
            "decide": self._decide,
            "reward": self._reward,
            "refresh": self._refresh,
        }

    def message_received(self, message: Any) -> None:
        seq, operation, *arguments = message
        handler = self._operations.get(operation)
        if handler is None:
            self._reply([seq, "error", 400, f"unknown operation {operation!r}"])
            return
        try:
            work = handler(*arguments)
        except TypeError as exc:  # a serving process of another version than this one
            self._reply([seq, "error", 400, f"{operation}: {exc}"])
            return
        task = asyncio.get_running_loop().create_task(self._answer(seq, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the requests already accepted (their commits complete even if no one reads the reply)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _answer(self, seq: int, work: Awaitable[Any]) -> None:
        try:
            result = await work
        except UnknownDecision as exc:
            self._reply([seq, "error", 404, str(exc)])
        except BacklogFull as exc:
            self._reply([seq, "error", 503, str(exc), "BacklogFull"])
        except RewardRefused as exc:
            # By name, so that the serving process raises the same refusal and answers as it would itself.
            self._reply([seq, "error", exc.status, str(exc), type(exc).__name__])
        except Exception as exc:
            log.exception("request %d failed", seq)
            self._reply([seq, "error", 503, f"{type(exc).__name__}: {exc}"])
        else:
            self._reply([seq, "ok", result])

    def _reply(self, message: list[Any]) -> None:
        # Replies completed in one turn of the loop (a group commit's worth) leave in one write.
        if not self._replies:
            asyncio.get_running_loop().call_soon(self._flush)
        self._replies.append(frame(message))

    def _flush(self) -> None:
        replies, self._replies = self._replies, []
        self.write(b"".join(replies))

    def _runtime(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("the decision process has not been started")
        return self.runtime

    async def _start(self, settings: dict[str, Any]) -> int:
        config = Settings.model_validate({**settings, "decision_process": False})
        logging.getLogger().setLevel(config.log_level)
        await asyncio.to_thread(_import_oracle_libraries, config)
        self.runtime = await Runtime.start(config)
        return os.getpid()

    async def _prepare(self, settings: dict[str, Any]) -> int:
        config = Settings.model_validate({**settings, "decision_process": False})
        await asyncio.to_thread(_import_oracle_libraries, config)
        await asyncio.to_thread(_load_policies, config)
        return os.getpid()

    async def _decide(
        self,
        decision_id: str | None,
        policy: str | None,
        now: int | None,
        context: dict[str, Any],
        actions: list[dict[str, Any]],
    ) -> list[Any]:
        asked = DecisionAsked(context, actions, decision_id, policy, None if now is None else from_epoch_ms(now))
        return outcome_to_wire(await self._runtime().decisions.decide(asked))

    async def _reward(self, decision_id: str, kind: str, value: float, observed_at: str, received_at: str) -> list[Any]:
        result = await self._runtime().decisions.log_reward(
            decision_id, kind, value, datetime.fromisoformat(observed_at), datetime.fromisoformat(received_at)
        )
        return reward_to_wire(result)

    async def _refresh(self) -> list[str]:
        return await self._runtime().refresh_policies()


def _import_oracle_libraries(settings: Settings) -> None:
    """Import the libraries of every oracle kind a policy names, before the first decision: the first
    promotion from generation 0 would otherwise import LightGBM while decisions wait behind it."""
    kinds = {spec.oracle for spec in settings.policies.values()}
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            kinds |= {policy.oracle for policy in registry.list_policies(session)}
    except SQLAlchemyError:
        pass  # a ledger not migrated yet holds no policy of its own: the runtime migrates it as it starts
    finally:
        engine.dispose()
    for kind in sorted(kinds):
        oracle_class(kind).import_libraries()


def _load_policies(settings: Settings) -> None:
    """Load the deployed policies once and drop them: what it imports (LightGBM, scikit-learn, pandas: seconds)
    stays imported, and a standby that starts its runtime later loads them again in a fraction of that."""
    engine = make_engine(settings.database_url)
    try:
        PolicyCache(make_sessionmaker(engine), settings.artifact_dir).refresh()
    finally:
        engine.dispose()


async def serve(connection: socket.socket) -> None:
    """Answer the serving process on ``connection`` until it closes it."""
    loop = asyncio.get_running_loop()
    server = _DecisionServer()
    await loop.connect_accepted_socket(lambda: server, connection)
    await server.closed
    await server.drain()
    if server.runtime is not None:
        await server.runtime.stop()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 1 or not arguments[0].isdigit():
        print("usage: python -m banditgate.service.decision_process FD  (started by banditgate serve)", file=sys.stderr)
        return 2
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s [decision process]: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    uvloop.run(serve(socket.socket(fileno=int(arguments[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
