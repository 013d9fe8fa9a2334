"""The long-lived parts of a serving process, built at start-up and torn down at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.ledger.decision_log import DatabaseDecisionLog, DecisionLog
from banditgate.ledger.migrate import upgrade
from banditgate.ledger.registry import ensure_policy
from banditgate.ledger.writer import BatchingWriter
from banditgate.service.decider import Decider
from banditgate.service.policy_cache import PolicyCache
from banditgate.service.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    writer: BatchingWriter
    decision_log: DecisionLog
    cache: PolicyCache
    decider: Decider
    _refresher: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        """Migrate the schema, start the writer, create configured policies, load the deployed generations."""
        if settings.kafka_bootstrap_servers:
            raise NotImplementedError(
                "streaming transport (BANDITGATE_KAFKA_BOOTSTRAP_SERVERS) is not available yet; unset it to use "
                "the embedded database log"
            )
        engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        await asyncio.to_thread(upgrade, engine)
        sessions = make_sessionmaker(engine)
        writer = BatchingWriter(sessions, max_batch=settings.writer_max_batch)
        writer.start()
        for name, policy in settings.policies.items():
            spec = policy.spec()
            if await writer.call(lambda s, name=name, spec=spec: ensure_policy(s, name, spec, actor="settings")):
                log.info("created policy %s (generation 0, uniform)", name)
        decision_log = DatabaseDecisionLog(sessions, writer)
        await decision_log.start()
        cache = PolicyCache(sessions, settings.artifact_dir)
        await asyncio.to_thread(cache.refresh)
        decider = Decider(cache, settings.default_policy, lambda policy: settings.gate_for(policy).segment_keys)
        runtime = cls(settings, engine, sessions, writer, decision_log, cache, decider)
        runtime._refresher = asyncio.create_task(runtime._refresh_loop())
        log.info("banditgate ready: database %s, policies %s", engine.url.render_as_string(), cache.names())
        return runtime

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.decision_log.stop()
        await self.writer.stop()
        self.engine.dispose()

    async def refresh_policies(self) -> list[str]:
        return await asyncio.to_thread(self.cache.refresh)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.policy_refresh_seconds)
            try:
                await self.refresh_policies()
            except Exception:
                log.exception("policy refresh failed; serving the policies already loaded")

    def database_ok(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:
            log.exception("database health check failed")
            return False
