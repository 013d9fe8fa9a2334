"""``banditgate joiner``: land the decision and reward events of a Kafka deployment in the central ledger."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from banditgate.service.commands.exits import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, load_settings


def joiner_command(
    group: Annotated[
        str | None, typer.Option(help="Kafka consumer group (default: the joiner_group_id setting)")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="port of /metrics for Prometheus; 0: none (default: joiner_metrics_port)"),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="interface /metrics listens on")] = "127.0.0.1",
    skip_offset: Annotated[
        list[str] | None,
        typer.Option(
            "--skip-offset",
            help="TOPIC:PARTITION:OFFSET of an unreadable event the joiner stopped at, to skip it (its bytes are kept "
            "in the ledger's skipped_events table); repeatable",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", exists=True, dir_okay=False, help="TOML settings file (or BANDITGATE_CONFIG)"),
    ] = None,
) -> None:
    """Consume the decision and reward topics and write them into the ledger (BANDITGATE_DATABASE_URL).

    Decisions are written once per decision_id and rewards once per event, with the ledger's reward rules;
    a reward whose decision has not arrived is held for joiner_hold_seconds, then recorded as orphaned.
    Offsets are committed after the database commit. An unreadable event stops the joiner (exit 1) with
    its topic, partition and offset; run again after upgrading (a newer schema version) or with
    --skip-offset. SIGTERM or Ctrl-C stops it once the batches in hand are written.
    """
    import os

    if config is not None:
        os.environ["BANDITGATE_CONFIG"] = str(config)
    from banditgate.service.joiner import parse_skip

    skip = set()
    for value in skip_offset or []:
        try:
            skip.add(parse_skip(value))
        except ValueError as exc:
            typer.secho(f"--skip-offset: {exc}", fg="red", err=True)
            raise typer.Exit(EXIT_USAGE) from None
    settings = load_settings()
    if not settings.kafka_bootstrap_servers:
        typer.secho(
            "the joiner needs a Kafka broker: set BANDITGATE_KAFKA_BOOTSTRAP_SERVERS (host:port[,host:port])",
            fg="red",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.WARNING)

    from banditgate.ledger.db import make_engine
    from banditgate.ledger.join import JoinWriter
    from banditgate.ledger.migrate import upgrade
    from banditgate.service.joiner import BrokerUnreachable, Joiner, JoinerMetrics, JoinerOptions, StoppedAtEvent

    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    upgrade(engine)
    metrics = JoinerMetrics()
    port = settings.joiner_metrics_port if metrics_port is None else metrics_port
    if port:
        metrics.serve(port, metrics_host)
    options = JoinerOptions(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        decisions_topic=settings.kafka_decisions_topic,
        rewards_topic=settings.kafka_rewards_topic,
        group_id=group or settings.joiner_group_id,
        partitions=settings.kafka_partitions,
        replication_factor=settings.kafka_replication_factor,
        hold=timedelta(seconds=settings.joiner_hold_seconds),
        max_batch=settings.joiner_max_batch,
        skip=frozenset(skip),
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    joiner = Joiner(JoinWriter(engine, settings.reward_kind_rules(), settings.max_reward_revisions), options, metrics)
    try:
        joiner.run(stop)
    except StoppedAtEvent as exc:
        typer.secho(f"joiner {exc}", fg="red", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except BrokerUnreachable as exc:
        typer.secho(f"{exc} (BANDITGATE_KAFKA_BOOTSTRAP_SERVERS)", fg="red", err=True)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    finally:
        engine.dispose()
