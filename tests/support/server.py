"""A real uvicorn server in a background thread, for API tests over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import uvicorn

from banditgate.service.app import create_app
from banditgate.service.http_server import uvicorn_options
from banditgate.service.runtime import Runtime
from banditgate.service.settings import Settings

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server(uvicorn.Server):
    """Remembers the event loop it serves on, so that tests can run coroutines on it."""

    loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)


class LiveServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            **uvicorn_options(settings),
        )
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def runtime(self) -> Runtime:
        """The app's runtime, for assertions on the ledger behind the server."""
        return self.app.state.runtime

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coroutine`` on the server's event loop (where its runtime lives) and return its result."""
        assert self._server.loop is not None, "the server is not running"
        return asyncio.run_coroutine_threadsafe(coroutine, self._server.loop).result(timeout)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(**{"base_url": self.url, "timeout": 30.0, **kwargs})  # type: ignore[arg-type]
