"""Prometheus metrics, and the ASGI middleware that times requests and caps body sizes.

With several workers (``banditgate serve --workers N``) each process keeps its own counters unless
``PROMETHEUS_MULTIPROC_DIR`` is set, in which case ``/metrics`` aggregates all of them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    Metric,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from banditgate.ledger.outbox import Outbox

LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Distinct action labels kept per policy; action ids are client-supplied, so cap the label cardinality.
MAX_ACTION_LABELS = 256

HTTP_REQUESTS = Counter(
    "banditgate_http_requests_total", "HTTP requests by route template and status", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "banditgate_http_request_duration_seconds",
    "HTTP request latency by route template",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
DECISIONS = Counter(
    "banditgate_decisions_total",
    "Decisions logged, by policy, generation, chosen action and whether it was exploration "
    "(not the oracle's best; every decision of an oracle-less generation 0 explores)",
    ["policy", "generation", "action", "explored"],
)
DECISION_FALLBACKS = Counter(
    "banditgate_decision_fallbacks_total", "Decisions that fell back to uniform because the oracle failed", ["policy"]
)
DECISION_PROCESS_RESTARTS = Counter(
    "banditgate_decision_process_restarts_total", "Decision processes restarted after they died unexpectedly"
)
SLOW_CLIENTS = Counter(
    "banditgate_http_slow_clients_total",
    "Connections closed because their request head was not complete in time (too_slow) or too large (too_large)",
    ["reason"],
)
REWARDS = Counter("banditgate_rewards_total", "Rewards received, by kind and outcome", ["kind", "status"])

_action_labels: dict[str, set[str]] = {}


class OutboxCollector:
    """The outboxes of this process's runtimes (Kafka transport), read from their files at each scrape.

    Read from the file, not counted in memory: the relay runs in whichever process holds the outbox's relay
    lock (usually a decision process), and every serving process answers ``/metrics``.
    """

    def __init__(self) -> None:
        self._outboxes: dict[int, Outbox] = {}
        self._registered = False

    def watch(self, outbox: Outbox) -> None:
        if not self._registered:
            REGISTRY.register(self)
            self._registered = True
        self._outboxes[id(outbox)] = outbox

    def forget(self, outbox: Outbox) -> None:
        self._outboxes.pop(id(outbox), None)

    def collect(self) -> Iterator[Metric]:
        backlog = GaugeMetricFamily(
            "banditgate_outbox_backlog", "Outbox events the Kafka broker has not acknowledged", labels=["instance"]
        )
        delivered = CounterMetricFamily(
            "banditgate_outbox_delivered", "Outbox events the Kafka broker acknowledged", labels=["instance"]
        )
        errors = CounterMetricFamily(
            "banditgate_relay_errors", "Failed attempts of the relay to deliver a batch to Kafka", labels=["instance"]
        )
        broker = GaugeMetricFamily(
            "banditgate_kafka_broker_up",
            "1 when the relay's last delivery to Kafka succeeded, 0 when it failed (absent before the first)",
            labels=["instance"],
        )
        for outbox in list(self._outboxes.values()):
            try:
                state = outbox.state()
            except Exception:
                continue  # a closed or unreadable outbox: /metrics still answers
            backlog.add_metric([state.instance], state.backlog)
            delivered.add_metric([state.instance], state.delivered_through)
            errors.add_metric([state.instance], state.relay_errors)
            if state.broker != "unknown":
                broker.add_metric([state.instance], 1.0 if state.broker == "ok" else 0.0)
        yield from (backlog, delivered, errors, broker)


OUTBOXES = OutboxCollector()


def action_label(policy: str, action_id: str) -> str:
    seen = _action_labels.setdefault(policy, set())
    if action_id in seen:
        return action_id
    if len(seen) < MAX_ACTION_LABELS:
        seen.add(action_id)
        return action_id
    return "_other"


def render_metrics() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(OUTBOXES)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


class RequestMetricsMiddleware:
    """Counts and times every HTTP request by route template, and refuses bodies over ``max_body_bytes``.

    A plain ASGI middleware (not ``BaseHTTPMiddleware``) so that it adds microseconds, not a task hop.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            status = 413
            await _send_json(send, 413, {"message": f"request body over {self.max_body_bytes} bytes"})
            self._observe(scope, status, start)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge(self.max_body_bytes)
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        finally:
            self._observe(scope, status, start)

    @staticmethod
    def _observe(scope: Scope, status: int, start: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        HTTP_REQUESTS.labels(method, template, str(status)).inc()
        HTTP_LATENCY.labels(method, template).observe(time.perf_counter() - start)


class _BodyTooLarge(HTTPException):
    # An HTTPException so that FastAPI's body parsing lets it through instead of turning it into a 400.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
