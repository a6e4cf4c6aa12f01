"""The schema: created at open, left alone when already there, and the same as the table code."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from kapsa.ledger import Ledger
from kapsa.ledger.migrate import head
from kapsa.ledger.schema import metadata
from tests.ledger._factory import entry


def _revision_and_schema(url: str) -> tuple[str | None, dict[str, Any]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            revision = MigrationContext.configure(conn).get_current_revision()
            found = inspect(conn)
            schema = {
                table: (
                    [(c["name"], repr(c["type"]), c["nullable"]) for c in found.get_columns(table)],
                    sorted((i["name"], tuple(i["column_names"])) for i in found.get_indexes(table)),
                )
                for table in found.get_table_names()
            }
        return revision, schema
    finally:
        engine.dispose()


def test_open_creates_the_schema_at_head(ledger_url: str) -> None:
    Ledger.open(ledger_url).close()

    revision, schema = _revision_and_schema(ledger_url)

    assert revision == head()
    assert set(schema) == {"alembic_version", "transitions"}


def test_opening_an_existing_ledger_again_changes_nothing(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as ledger:
        ledger.append(entry())
    before = _revision_and_schema(ledger_url)

    with Ledger.open(ledger_url) as again:
        assert again.history(project="web") == [entry()]

    assert _revision_and_schema(ledger_url) == before


def test_the_migrations_build_exactly_the_table_the_code_defines(ledger_url: str) -> None:
    Ledger.open(ledger_url).close()
    engine = create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()
