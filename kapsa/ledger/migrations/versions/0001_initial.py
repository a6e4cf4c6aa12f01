"""The transitions table and the indexes behind history, deployments and why.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "transitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=True),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("project", sa.String(253), nullable=False),
        sa.Column("uid", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("from_state", sa.String(64), nullable=False),
        sa.Column("to_state", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(1024), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("commit", sa.String(64), nullable=True),
        sa.Column("image", sa.Text(), nullable=True),
        sa.Column("generation", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.String(253), nullable=True),
        sa.UniqueConstraint("uid", "seq", name="uq_transitions_uid_seq"),
    )
    op.create_index("ix_transitions_env_at", "transitions", ["project", "kind", "name", "at", "id"])
    op.create_index("ix_transitions_project_at", "transitions", ["project", "at", "id"])
    op.create_index("ix_transitions_at", "transitions", ["at"])


def downgrade() -> None:
    op.drop_table("transitions")
