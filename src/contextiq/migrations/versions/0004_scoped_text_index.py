"""memories: full-text index led by the scope, so keyword search reads one scope's rows

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

On PostgreSQL the whole-table GIN index on `to_tsvector('english', fact)` makes a keyword query
collect every matching row of every tenant before the scope filter applies, so its cost grows with
the table (bench/retrieve_scale.py: 10 → 37 ms p50 from 100k to 1M memories). A GIN index over
(tenant_id, bank_id, scope_key, tsvector) — btree_gin, installed by 0001 — answers the scope and the
words in one index scan. SQLite's FTS5 table is unchanged.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE INDEX IF NOT EXISTS idx_memories_scope_fts ON memories "
        "USING GIN (tenant_id, bank_id, scope_key, to_tsvector('english', fact))"
    )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS idx_memories_scope_fts")
