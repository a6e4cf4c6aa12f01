"""Alembic migrations of the ledger; `kapsa.ledger.migrate` runs them, there is no alembic.ini."""
