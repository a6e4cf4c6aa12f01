"""The audit ledger: every transition of every Project and Environment, appended once, kept.

Status tells what an object is now; the ledger tells how it got there. It is the only part of
Kapsa that speaks SQL (SQLAlchemy Core, Alembic migrations), on a SQLite file or PostgreSQL.
"""

from kapsa.ledger.records import Deployment, Entry
from kapsa.ledger.store import DEFAULT_URL, Ledger
from kapsa.ledger.when import parse_when

__all__ = ["DEFAULT_URL", "Deployment", "Entry", "Ledger", "parse_when"]
