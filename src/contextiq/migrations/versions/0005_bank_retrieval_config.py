"""memory banks: per-bank settings of the hybrid reranker (`retrieval_config`)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

A JSON object of `RetrievalConfig` settings; `{}` (every existing bank) means the server's defaults.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from contextiq.core.db.types import JSONType

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The server default fills existing rows on both dialects (SQLite requires one for a NOT NULL column).
    op.add_column(
        "memory_bank_configs",
        sa.Column("retrieval_config", JSONType, nullable=False, server_default=sa.text("'{}'")),
    )


def downgrade() -> None:
    # In place on both dialects (SQLite 3.35+): no table copy, so the memories' foreign keys never see
    # the bank table dropped.
    op.drop_column("memory_bank_configs", "retrieval_config")
