"""Ledgers built once and copied for each test: for modules whose tests each need the same expensive ledger
(days of simulated traffic, a trained generation) and then change it in their own way.

A copy is the bytes of the database and of its artifact folder, so a test sees exactly what building the ledger
again would have given it (the build is deterministic: same traffic, same seeds), and what it writes reaches no
other test. Artifact paths in the ledger are relative to the artifact folder, so the copied folder serves the
copied database.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from banditgate.ledger.db import make_engine, make_sessionmaker
from banditgate.service.runtime import prepare_ledger
from banditgate.service.settings import Settings
from tests.support import postgres

#: Fills a prepared ledger (its sessions and artifact folder).
Build = Callable[[sessionmaker[Session], Path], object]


class LedgerTemplates:
    """Ledgers built on first use, one per name and database kind (SQLite or PostgreSQL), and copied on demand.

    Parameters
    ----------
    folder
        Where the SQLite templates and the artifact folders of every template live (a module's temporary folder).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._built: dict[tuple[str, str], tuple[str, Path]] = {}  # (name, kind) -> (database URL, artifacts)

    def copy(self, name: str, build: Build, settings: Settings, admin_url: str | None = None) -> Settings:
        """``settings`` on a copy of the template ``name`` (built by ``build`` the first time it is asked for).

        On SQLite the copy is written to the file of ``settings.database_url`` (which must not exist yet); on
        PostgreSQL it is a new database on the server of ``admin_url``, and the returned settings name it. The
        template's artifact folder is copied to ``settings.artifact_dir`` (which must not exist yet).
        """
        kind = "sqlite" if settings.database_url.startswith("sqlite") else "postgresql"
        if (name, kind) not in self._built:
            self._built[name, kind] = self._build(name, kind, build, settings, admin_url)
        template_url, template_artifacts = self._built[name, kind]
        if kind == "sqlite":
            # The backup API copies a consistent database whatever its journal mode (the WAL included).
            source = sqlite3.connect(make_url(template_url).database)
            target = sqlite3.connect(make_url(settings.database_url).database)
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
            database_url = settings.database_url
        else:
            assert admin_url is not None, "a PostgreSQL template needs the server's admin URL"
            database_url = postgres.copy_database(admin_url, template_url)
        shutil.copytree(template_artifacts, settings.artifact_dir)
        return settings.model_copy(update={"database_url": database_url})

    def _build(self, name: str, kind: str, build: Build, settings: Settings, admin_url: str | None) -> tuple[str, Path]:
        folder = self.folder / f"{name}-{kind}"
        folder.mkdir()
        if kind == "sqlite":
            url = f"sqlite:///{folder / 'ledger.db'}"
        else:
            assert admin_url is not None, "a PostgreSQL template needs the server's admin URL"
            url = postgres.fresh_database(admin_url)
        template = settings.model_copy(update={"database_url": url, "artifact_dir": folder / "artifacts"})
        prepare_ledger(template)  # the schema and the configured policies, as a server's start-up makes them
        engine = make_engine(url)
        try:
            build(make_sessionmaker(engine), template.artifact_dir)
        finally:
            engine.dispose()  # nothing may stay connected to a PostgreSQL template while it is copied
        return url, template.artifact_dir
