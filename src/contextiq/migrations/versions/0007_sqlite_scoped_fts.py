"""memories (SQLite): the FTS5 index knows each memory's scope, so keyword search reads one scope

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22

FTS5 matched a keyword query against every memory of the database and only then did the join
apply the scope: with 100k memories in 1k scopes a keyword query cost 28 ms, growing with the
table (`bench/retrieve_scale.py --backend sqlite`). The index is rebuilt contentless with a second
column, `part`, holding one token per memory made of its tenant, bank and scope key
(`sqlite_fts5_partitioned_ddl`), and queries ask for `part : "<token>" AND fact : (…)`.
PostgreSQL is unchanged (its scope-led GIN index of 0006 does the same).
"""

from __future__ import annotations

from alembic import op

from contextiq.core.search.keyword import sqlite_fts5_ddl, sqlite_fts5_drop_ddl, sqlite_fts5_partitioned_ddl

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PARTITION = ("tenant_id", "bank_id", "scope_key")


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for statement in sqlite_fts5_drop_ddl(fts_table="memories_fts"):
        op.execute(statement)
    for statement in sqlite_fts5_partitioned_ddl(
        table="memories", column="fact", fts_table="memories_fts", partition=PARTITION
    ):
        op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for statement in sqlite_fts5_drop_ddl(fts_table="memories_fts"):
        op.execute(statement)
    for statement in sqlite_fts5_ddl(table="memories", column="fact", fts_table="memories_fts"):
        op.execute(statement)
