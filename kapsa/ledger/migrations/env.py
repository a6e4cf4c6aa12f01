"""Alembic environment: runs on the connection `kapsa.ledger.migrate` opened and locked."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from kapsa.ledger.schema import metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("run the ledger's migrations through kapsa.ledger.migrate")
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


run()
