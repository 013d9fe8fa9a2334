"""The long-lived parts of a serving process, built at start-up and torn down at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.decision_log import DatabaseDecisionLog, DecisionLog
from banditgate.ledger.migrate import upgrade
from banditgate.ledger.outbox import Outbox, OutboxDecisionLog
from banditgate.ledger.registry import ensure_policy
from banditgate.ledger.writer import BatchingWriter
from banditgate.service import metrics
from banditgate.service.decider import Decider
from banditgate.service.decision_client import ProcessDecisionService
from banditgate.service.decision_service import DecisionService, LocalDecisionService
from banditgate.service.gate_worker import GateWorker
from banditgate.service.policy_cache import PolicyCache
from banditgate.service.settings import Settings

if TYPE_CHECKING:  # kafka-python is imported only when a Kafka transport is configured
    from banditgate.service.relay import Relay

log = logging.getLogger(__name__)


def prepare_ledger(settings: Settings) -> None:
    """Migrate the schema and create the configured policies, as every serving process does at start-up.

    ``banditgate serve`` does it once before its workers start, so that they do not race each other to
    create the schema of a new database.
    """
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        upgrade(engine)
        with make_sessionmaker(engine).begin() as session:
            for name, policy in settings.policies.items():
                if ensure_policy(session, name, policy.spec(), actor="settings"):
                    log.info("created policy %s (generation 0, uniform)", name)
    finally:
        engine.dispose()


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    writer: BatchingWriter
    decision_log: DecisionLog
    cache: PolicyCache
    decider: Decider
    decisions: DecisionService
    gate_worker: GateWorker = field(init=False)  # computes gate evaluations off this process, on demand
    # Kafka transport: the writer of this process's outbox file, and its relay (in the process that logs)
    outbox_writer: BatchingWriter | None = None
    relay: Relay | None = None
    _refresher: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.gate_worker = GateWorker(self.settings)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        """Migrate the schema, start the writer, create configured policies, load the deployed generations.

        With ``settings.decision_process``, also start the decision process and forward decisions to it.
        """
        if settings.gc_threshold:
            # A request allocates thousands of short-lived objects; with the default threshold (700) the young
            # generation is collected several times per request.
            _, older, oldest = gc.get_threshold()
            gc.set_threshold(settings.gc_threshold, older, oldest)
        engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        await asyncio.to_thread(upgrade, engine)
        sessions = make_sessionmaker(engine)
        writer = BatchingWriter(sessions, max_batch=settings.writer_max_batch)
        writer.start()
        for name, policy in settings.policies.items():
            spec = policy.spec()
            if await writer.call(lambda s, name=name, spec=spec: ensure_policy(s, name, spec, actor="settings")):
                log.info("created policy %s (generation 0, uniform)", name)
        outbox_writer: BatchingWriter | None = None
        relay: Relay | None = None
        decision_log: DecisionLog
        if settings.kafka_bootstrap_servers:
            decision_log, outbox_writer, relay = await _start_outbox(settings, sessions)
        else:
            decision_log = DatabaseDecisionLog(
                sessions, writer, settings.reward_kind_rules(), max_revisions=settings.max_reward_revisions
            )
            await decision_log.start()
        # With a decision process, this process only answers HTTP: it needs the policies' names, not their models.
        cache = PolicyCache(sessions, settings.artifact_dir, models=not settings.decision_process)
        await asyncio.to_thread(cache.refresh)
        decider = Decider(cache, settings.default_policy, lambda policy: settings.gate_for(policy).segment_keys)
        decisions: DecisionService
        if settings.decision_process:
            decisions = ProcessDecisionService(settings)
        else:
            decisions = LocalDecisionService(decider, decision_log)
        try:
            await decisions.start()
        except BaseException:
            await decision_log.stop()
            await _stop_outbox(outbox_writer, relay, decision_log)
            await writer.stop()
            engine.dispose()
            raise
        runtime = cls(settings, engine, sessions, writer, decision_log, cache, decider, decisions)
        runtime.outbox_writer, runtime.relay = outbox_writer, relay
        runtime._refresher = asyncio.create_task(runtime._refresh_loop())
        log.info("banditgate ready: database %s, policies %s", engine.url.render_as_string(), cache.names())
        return runtime

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.decisions.stop()
        await self.decision_log.stop()
        await _stop_outbox(self.outbox_writer, self.relay, self.decision_log)
        await self.writer.stop()
        self.engine.dispose()

    async def refresh_policies(self) -> list[str]:
        """Reload the policies whose revision changed, here and in the decision process; return their names."""
        reloaded = await asyncio.to_thread(self.cache.refresh)
        await self.decisions.refresh_policies()
        return reloaded

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.policy_refresh_seconds)
            try:
                await asyncio.to_thread(self.cache.refresh)  # a decision process polls on its own
            except Exception:
                log.exception("policy refresh failed; serving the policies already loaded")

    def outbox(self) -> Outbox | None:
        """The outbox decisions and rewards are logged to (Kafka transport), else ``None``."""
        return self.decision_log.outbox if isinstance(self.decision_log, OutboxDecisionLog) else None

    def database_ok(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:
            log.exception("database health check failed")
            return False


async def _start_outbox(
    settings: Settings, central: sessionmaker[Session]
) -> tuple[OutboxDecisionLog, BatchingWriter, Relay | None]:
    """The outbox decision log of a Kafka transport, its writer, and the relay if this process logs.

    A serving process with a decision process only reads the outbox (its decision process logs and relays).
    """
    outbox = await asyncio.to_thread(Outbox, settings.outbox_path, settings.instance_id, settings.sqlite_synchronous)
    writer = BatchingWriter(outbox.sessions, max_batch=settings.writer_max_batch)
    writer.start()
    decision_log = OutboxDecisionLog(
        outbox,
        writer,
        central,
        settings.reward_kind_rules(),
        max_revisions=settings.max_reward_revisions,
        max_backlog=settings.outbox_max_backlog,
    )
    await decision_log.start()
    metrics.OUTBOXES.watch(outbox)
    relay = None
    if not settings.decision_process:
        from banditgate.service.relay import Relay

        relay = Relay(outbox, settings)
        relay.start()
    log.info("logging to outbox %s as instance %s", outbox.path, outbox.instance)
    return decision_log, writer, relay


async def _stop_outbox(writer: BatchingWriter | None, relay: Relay | None, decision_log: DecisionLog) -> None:
    if relay is not None:
        await asyncio.to_thread(relay.stop)
    if writer is not None:
        await writer.stop()
    if isinstance(decision_log, OutboxDecisionLog):
        metrics.OUTBOXES.forget(decision_log.outbox)
        decision_log.outbox.close()
