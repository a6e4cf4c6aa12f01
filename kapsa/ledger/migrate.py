"""Alembic, driven from code: `Ledger.open` upgrades the schema, the CLI only checks it."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from kapsa.errors import LedgerError
from kapsa.ledger.engine import writing

MIGRATIONS = Path(__file__).parent / "migrations"
#: pg_advisory_xact_lock key: two operators starting at once migrate one after the other.
_PG_LOCK_KEY = 0x6B61707361  # "kapsa"


def alembic_config() -> Config:
    """A Config built in code, so that no alembic.ini has to be found at run time."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:
        raise LedgerError("the ledger's migrations have no head revision")
    return revision


def current(engine: Engine) -> str | None:
    """The revision the database is at; None for a database without the ledger's tables."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Create or upgrade the schema to head, in one transaction, holding the write lock.

    The lock (SQLite's IMMEDIATE transaction, an advisory lock on PostgreSQL) makes two
    processes opening a new ledger at once take turns; the second one then finds head and
    does nothing.
    """
    config = alembic_config()
    with writing(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def check(engine: Engine) -> None:
    """Refuse a database whose schema is missing or not the one this Kapsa expects."""
    found, expected = current(engine), head()
    if found is None:
        raise LedgerError("no ledger there: the database has no transitions table")
    if found != expected:
        raise LedgerError(
            f"the ledger's schema is at revision {found}, this Kapsa expects {expected}; "
            "the operator upgrades it when it starts"
        )
