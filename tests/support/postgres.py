"""A throwaway PostgreSQL cluster for the test session: initdb in a temporary folder, listen on loopback.

Found through ``BANDITGATE_TEST_POSTGRES_URL`` (an existing server) or the PostgreSQL binaries
(``pg_ctl`` on PATH or under /usr/lib/postgresql/*/bin). PostgreSQL refuses to run as root, so as root
the cluster runs as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

URL_ENV = "BANDITGATE_TEST_POSTGRES_URL"


def server_bin_dir() -> Path | None:
    """The folder of the PostgreSQL server binaries (its client programs are there too), or None."""
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(os.path.realpath(pg_ctl)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], as_postgres: bool) -> None:
    if as_postgres:
        args = ["runuser", "-u", "postgres", "--", *args]
    subprocess.run(args, check=True, capture_output=True, timeout=120)


def available() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    if os.environ.get(URL_ENV):
        return None
    if server_bin_dir() is None:
        return "no PostgreSQL binaries (install the postgresql package, or set BANDITGATE_TEST_POSTGRES_URL)"
    return None


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the admin URL of a running server (``postgresql://user@127.0.0.1:port/postgres``)."""
    if os.environ.get(URL_ENV):
        yield os.environ[URL_ENV]
        return
    bin_dir = server_bin_dir()
    assert bin_dir is not None, available()
    as_postgres = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="banditgate-pg-"))
    data = root / "data"
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    user = "postgres" if as_postgres else os.environ.get("USER", "postgres")
    port = _free_port()
    _run([str(bin_dir / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "--no-sync", "-E", "UTF8"], as_postgres)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
    _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start"], as_postgres)
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    finally:
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], as_postgres)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(admin_url: str) -> str:
    """Create an empty database on the server and return its SQLAlchemy URL."""
    name = "bg_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def copy_database(admin_url: str, template_url: str) -> str:
    """Create a database on the server as a copy of the one at ``template_url``; return its SQLAlchemy URL.

    ``CREATE DATABASE ... TEMPLATE`` copies files, not rows: far cheaper than filling a ledger again. PostgreSQL
    refuses while anything is connected to the template, so its engine must be disposed first.
    """
    name = "bg_" + uuid.uuid4().hex[:12]
    template = template_url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name
