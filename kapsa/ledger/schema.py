"""The `transitions` table in SQLAlchemy Core: the definition the migrations are checked against."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the backend keeps.

    SQLite has no time zones and hands back naive values; stored as UTC text they also sort
    correctly, so `at` comparisons work the same on both backends.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the ledger takes aware datetimes only")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

transitions = Table(
    "transitions",
    metadata,
    # BigInteger on PostgreSQL; on SQLite it must stay INTEGER to be the rowid alias.
    Column(
        "id",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("namespace", String(253), nullable=True),
    Column("name", String(253), nullable=False),
    Column("project", String(253), nullable=False),
    Column("uid", String(128), nullable=False),
    Column("seq", Integer(), nullable=False),
    Column("from_state", String(64), nullable=False),
    Column("to_state", String(64), nullable=False),
    Column("trigger", String(128), nullable=False),
    Column("reason", String(1024), nullable=False),
    Column("message", Text(), nullable=False),
    Column("commit", String(64), nullable=True),
    Column("image", Text(), nullable=True),
    Column("generation", BigInteger(), nullable=True),
    Column("source", String(253), nullable=True),
    UniqueConstraint("uid", "seq", name="uq_transitions_uid_seq"),
    # History is ordered by (at, id). These serve one environment's and a whole project's
    # history, both "the last 50" and a time window, from the index alone: with (project, kind,
    # name, id) a window had to fetch every row of the environment to test `at` (5 ms at 1M).
    Index("ix_transitions_env_at", "project", "kind", "name", "at", "id"),
    Index("ix_transitions_project_at", "project", "at", "id"),
    # Time windows across everything (retention, "what happened last night").
    Index("ix_transitions_at", "at"),
)
