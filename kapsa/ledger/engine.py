"""Engines set up for an audit log: durable SQLite, and PostgreSQL that fails fast when down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError

from kapsa.errors import LedgerError

#: Seconds a writer waits for another writer's lock before the append fails.
BUSY_TIMEOUT_S = 30
#: Seconds to reach PostgreSQL before the operation fails instead of hanging.
CONNECT_TIMEOUT_S = 10
#: Execution option read by the SQLite `begin` hook: "IMMEDIATE" takes the write lock up front.
BEGIN_OPTION = "kapsa_sqlite_begin"


def parse_url(url: str) -> URL:
    """The URL parsed, or a LedgerError a person can act on instead of SQLAlchemy's.

    The text is not repeated: an unparsable URL may still hold a password.
    """
    try:
        return make_url(url)
    except ArgumentError:
        raise LedgerError(
            "not a ledger URL (expected sqlite:////path/to/ledger.db or "
            "postgresql+psycopg://user:password@host/database)"
        ) from None


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for another backend or an in-memory database."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database))


def make_engine(url: str) -> Engine:
    """An engine for `url`; every SQLite connection gets WAL, synchronous=FULL, a busy timeout.

    synchronous=FULL because an acknowledged transition must survive a power cut, not only a
    process crash (WAL + NORMAL only survives the latter).
    """
    backend = parse_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
        _make_sqlite_durable(engine)
        return engine
    if backend == "postgresql":
        return create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
        )
    raise LedgerError(f"the ledger runs on SQLite or PostgreSQL, not {backend!r}")


def _make_sqlite_durable(engine: Engine) -> None:
    """Pragmas per connection, and BEGIN emitted by us so that DDL is transactional too.

    Python's sqlite3 (before 3.12's autocommit attribute) never BEGINs before DDL and only a
    DEFERRED BEGIN before DML; taking over BEGIN lets migrations and appends take the write lock
    first (IMMEDIATE), so concurrent writers queue on the busy timeout instead of failing.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def writing(engine: Engine) -> Engine:
    """The same engine, whose transactions take SQLite's write lock at BEGIN."""
    return engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
