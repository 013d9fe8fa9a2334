"""Alembic environment: run with a connection from :func:`banditgate.ledger.migrate.upgrade`, or with
``-x url=...`` from the alembic command line."""

from __future__ import annotations

from alembic import context

from banditgate.ledger.db import make_engine
from banditgate.ledger.models import Base

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database URL: alembic -x url=sqlite:///./banditgate.db upgrade head")
    with make_engine(url).connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
