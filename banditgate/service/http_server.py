"""How uvicorn serves the app: limits and timeouts against slow and greedy clients.

uvicorn has a keep-alive timeout (idle time between requests) and a concurrency limit, but no deadline for
the request head: every byte received restarts nothing and cancels the keep-alive timer, so a client that
sends its headers one byte a second (or nothing at all after connecting) holds a connection, a file
descriptor and a slot of the concurrency limit for as long as it likes. :class:`HeadDeadline` adds that
deadline to uvicorn's HTTP protocols: the request line and headers must arrive within
``http_header_timeout_seconds`` of the connection opening, or of the first byte of the next request on a
kept-alive connection, and within ``http_max_header_bytes``; otherwise the connection gets a 408 (or 431)
and is closed. Request bodies are not covered: the body limit and the endpoints' own timeouts bound them.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from banditgate.service import metrics
from banditgate.service.settings import Settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional in uvicorn; its pure-Python parser is the fallback
    HttpToolsProtocol = None


class HeadDeadline:
    """Mixin for uvicorn's HTTP protocols (``H11Protocol``, ``HttpToolsProtocol``): a deadline and a size
    limit for each request head.

    Parameters
    ----------
    header_timeout : float
        Seconds a request head may take, from the connection opening (first request) or from the first
        byte of a later request on the same connection.
    max_header_bytes : int
        Bytes a request head may take (httptools, unlike h11, sets no limit of its own).
    *args, **kwargs
        Passed to the uvicorn protocol (``config``, ``server_state``, ``app_state``, ``_loop``).
    """

    # Attributes of the uvicorn protocol this mixes into.
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def __init__(self, *args: Any, header_timeout: float, max_header_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        # Between requests (none yet, or the last one answered), these bytes start or continue a request head.
        reading_head = cycle is None or cycle.response_complete
        super().data_received(data)
        if self.cycle is not cycle:  # a head completed: its request is being served
            self._stop_head_timer()
            self._head_bytes = 0
        elif reading_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large", "too_large")
            elif self._head_timer is None:
                self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._refuse(408, "Request Timeout", "too_slow")

    def _refuse(self, status: int, phrase: str, reason: str) -> None:
        self._stop_head_timer()
        metrics.SLOW_CLIENTS.labels(reason).inc()
        body = f"request head not complete within {self.header_timeout:g} s or {self.max_header_bytes} bytes\n"
        self.transport.write(
            f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n{body}".encode()
        )
        self.transport.close()


class H11HeadDeadlineProtocol(HeadDeadline, H11Protocol):
    """uvicorn's h11 protocol with a request head deadline."""


if HttpToolsProtocol is not None:

    class HttpToolsHeadDeadlineProtocol(HeadDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with a request head deadline."""


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run``/``uvicorn.Config`` that apply the HTTP limits of ``settings``.

    The protocol is a ``functools.partial`` of a module-level class, so that it pickles into the worker
    processes of ``--workers N``.
    """
    protocol = H11HeadDeadlineProtocol if HttpToolsProtocol is None else HttpToolsHeadDeadlineProtocol
    return {
        "http": functools.partial(
            protocol,
            header_timeout=settings.http_header_timeout_seconds,
            max_header_bytes=settings.http_max_header_bytes,
        ),
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        "limit_concurrency": settings.http_max_connections,
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
    }
