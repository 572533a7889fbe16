"""memories: a stored tsvector of the fact, so keyword ranking reads it instead of re-parsing the text

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22

Ranking a keyword query (BM25 since this revision, `ts_rank_cd` before) needs each matching row's
tsvector. Computed from `fact` at query time, `to_tsvector` ran for every matching row of the scope
on every query: 24 ms of a 48 ms hybrid retrieve in a 600-memory scope. PostgreSQL now keeps it in a
generated column, `fact_fts`. The scope-led GIN index of 0004 is rebuilt over that column and
without `tenant_id, bank_id`: in GIN each key column has its own posting list, and a tenant's or a
bank's covers all of its rows, so intersecting them cost 3.6 ms per query for one tenant of 1M
memories (`bench/retrieve_scale.py`); the scope key's list is the scope's rows, and the tenant and
bank are rechecked on those few. The whole-table expression index of 0002 (`idx_memories_fact_fts`)
served no query (every keyword query is scoped) and cost every write a second GIN update: it is
dropped. SQLite's FTS5 table is unchanged.

The embedding column's storage becomes PLAIN: a 384-float vector is 1.5 kB, so with a fact of a few
hundred characters the row passed the 2 kB TOAST threshold and PostgreSQL moved the vector out of
line, and every cosine distance of a scope search read it back from the TOAST table (4 buffers per
row instead of 1). Vectors do not compress, so keeping them in the row costs nothing; long facts
are still TOASTed. The table rewrite that adds `fact_fts` applies it to existing rows.

Adding a stored generated column rewrites `memories` under an exclusive lock: on a large table, run
the upgrade in a maintenance window.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS idx_memories_scope_fts")
    op.execute("DROP INDEX IF EXISTS idx_memories_fact_fts")
    op.execute("ALTER TABLE memories ALTER COLUMN embedding SET STORAGE PLAIN")
    op.execute(
        "ALTER TABLE memories ADD COLUMN IF NOT EXISTS fact_fts tsvector "
        "GENERATED ALWAYS AS (to_tsvector('english', fact)) STORED"
    )
    op.execute(
        "CREATE INDEX IF NOT EXISTS idx_memories_scope_fts ON memories "
        "USING GIN (scope_key, fact_fts)"
    )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS idx_memories_scope_fts")
    op.execute("ALTER TABLE memories DROP COLUMN IF EXISTS fact_fts")
    op.execute("ALTER TABLE memories ALTER COLUMN embedding SET STORAGE EXTERNAL")
    op.execute("CREATE INDEX IF NOT EXISTS idx_memories_fact_fts ON memories USING GIN (to_tsvector('english', fact))")
    op.execute(
        "CREATE INDEX IF NOT EXISTS idx_memories_scope_fts ON memories "
        "USING GIN (tenant_id, bank_id, scope_key, to_tsvector('english', fact))"
    )
