"""memories: memory bank configs, memories, memory revisions, full-text and vector search

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from contextiq.core.db.types import Embedding, JSONType, StrList, UTCDateTime
from contextiq.core.search.keyword import postgres_text_index_ddl, sqlite_fts5_ddl, sqlite_fts5_drop_ddl

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _pg() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _require_pgvector() -> None:
    if context.is_offline_mode():  # --sql: emit the statement, nothing to check against
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return
    bind = op.get_bind()
    available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).scalar()
    if not available:
        raise RuntimeError(
            "ContextIQ's memories need the pgvector extension on PostgreSQL; install it "
            "(scripts/install-pgvector.sh on Debian) and run the migration again"
        )
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")


def upgrade() -> None:
    pg = _pg()
    if pg:
        _require_pgvector()
    fact_length = "char_length(fact) <= 2000" if pg else "length(fact) <= 2000"

    op.create_table(
        "memory_bank_configs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("memory_topics", JSONType, nullable=False),
        sa.Column("few_shot_examples", JSONType),
        sa.Column("ttl_config", JSONType, nullable=False),
        sa.Column("similarity_search_config", JSONType, nullable=False),
        sa.Column("generation_config", JSONType, nullable=False),
        sa.Column("enable_revisions", sa.Boolean(), nullable=False),
        sa.Column("scope_keys", StrList, nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_memory_bank_configs"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["organizations.id"], ondelete="CASCADE",
            name="fk_memory_bank_configs_tenant_id_organizations",
        ),
    )
    op.create_index(
        "uq_memory_bank_configs_tenant_id_name", "memory_bank_configs", ["tenant_id", "name"], unique=True
    )
    op.create_index("idx_memory_bank_configs_tenant", "memory_bank_configs", ["tenant_id"])
    op.create_index(
        "idx_memory_bank_configs_active", "memory_bank_configs", ["is_active"],
        postgresql_where=sa.text("is_active = TRUE"),
    )

    op.create_table(
        "memories",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("bank_id", sa.Uuid(), nullable=False),
        sa.Column("scope", JSONType, nullable=False),
        sa.Column("scope_key", sa.Text(), nullable=False),
        sa.Column("fact", sa.Text(), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("confidence", sa.REAL(), nullable=False),
        sa.Column("source_session_id", sa.Uuid()),
        sa.Column("source_type", sa.String(50), nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("revision_count", sa.Integer(), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("embedding", Embedding()),
        sa.Column("embedding_model", sa.String(255)),
        sa.Column("event_time", UTCDateTime()),
        sa.Column("valid_from", UTCDateTime(), nullable=False),
        sa.Column("valid_to", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_memories"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["organizations.id"], ondelete="CASCADE", name="fk_memories_tenant_id_organizations"
        ),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["memory_bank_configs.id"], ondelete="CASCADE",
            name="fk_memories_bank_id_memory_bank_configs",
        ),
        sa.ForeignKeyConstraint(
            ["source_session_id"], ["sessions.id"], ondelete="SET NULL",
            name="fk_memories_source_session_id_sessions",
        ),
        sa.CheckConstraint(fact_length, name="ck_memories_fact_length"),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name="ck_memories_confidence_range"),
        sa.CheckConstraint(
            "source_type IN ('generated', 'direct', 'imported')", name="ck_memories_source_type"
        ),
    )
    op.create_index("idx_memories_scope_key", "memories", ["tenant_id", "bank_id", "scope_key"])
    op.create_index("idx_memories_tenant_created", "memories", ["tenant_id", "created_at", "id"])
    op.create_index("idx_memories_bank", "memories", ["bank_id"])
    op.create_index("idx_memories_scope", "memories", ["scope"], postgresql_using="gin")
    op.create_index("idx_memories_topic", "memories", ["topic"])
    op.create_index("idx_memories_created_at", "memories", ["created_at"])
    op.create_index(
        "idx_memories_expires_at", "memories", ["expires_at"], postgresql_where=sa.text("expires_at IS NOT NULL")
    )
    op.create_index(
        "idx_memories_source_session", "memories", ["source_session_id"],
        postgresql_where=sa.text("source_session_id IS NOT NULL"),
    )
    op.create_index(
        "idx_memories_active", "memories", ["is_deleted"], postgresql_where=sa.text("is_deleted = FALSE")
    )
    op.create_index(
        "idx_memories_scope_topic", "memories", ["scope"], postgresql_using="gin",
        postgresql_where=sa.text("topic IS NOT NULL"),
    )

    op.create_table(
        "memory_revisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("memory_id", sa.Uuid(), nullable=False),
        sa.Column("revision_number", sa.Integer(), nullable=False),
        sa.Column("fact", sa.Text(), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("source_session_id", sa.Uuid()),
        sa.Column("extracted_memories", JSONType),
        sa.Column("confidence", sa.REAL(), nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("valid_from", UTCDateTime(), nullable=False),
        sa.Column("valid_to", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_memory_revisions"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["organizations.id"], ondelete="CASCADE",
            name="fk_memory_revisions_tenant_id_organizations",
        ),
        sa.ForeignKeyConstraint(
            ["memory_id"], ["memories.id"], ondelete="CASCADE", name="fk_memory_revisions_memory_id_memories"
        ),
        sa.ForeignKeyConstraint(
            ["source_session_id"], ["sessions.id"], ondelete="SET NULL",
            name="fk_memory_revisions_source_session_id_sessions",
        ),
        sa.CheckConstraint("revision_number >= 1", name="ck_memory_revisions_revision_number_positive"),
        sa.CheckConstraint(fact_length, name="ck_memory_revisions_fact_length"),
        sa.CheckConstraint(
            "action IN ('CREATED', 'UPDATED', 'DELETED')", name="ck_memory_revisions_action"
        ),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1", name="ck_memory_revisions_confidence_range"
        ),
    )
    op.create_index(
        "uq_memory_revisions_memory_id_revision_number", "memory_revisions", ["memory_id", "revision_number"],
        unique=True,
    )
    op.create_index("idx_revisions_memory_id", "memory_revisions", ["memory_id"])
    op.create_index("idx_revisions_created_at", "memory_revisions", ["created_at"])
    op.create_index("idx_revisions_action", "memory_revisions", ["action"])
    op.create_index("idx_revisions_memory_timeline", "memory_revisions", ["memory_id", "revision_number"])
    op.create_index("idx_revisions_tenant", "memory_revisions", ["tenant_id"])

    if pg:
        op.execute(
            "ALTER TABLE memories ADD CONSTRAINT ck_memories_scope_max_keys "
            "CHECK (jsonb_typeof(scope) = 'object' AND jsonb_object_keys_count(scope) <= 5)"
        )
        for statement in postgres_text_index_ddl(table="memories", column="fact", name="idx_memories_fact"):
            op.execute(statement)
        for table in ("memory_bank_configs", "memories"):
            op.execute(
                f"CREATE TRIGGER update_{table}_updated_at BEFORE UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION update_updated_at_column()"
            )
    else:
        for statement in sqlite_fts5_ddl(table="memories", column="fact", fts_table="memories_fts"):
            op.execute(statement)


def downgrade() -> None:
    if not _pg():
        for statement in sqlite_fts5_drop_ddl(fts_table="memories_fts"):
            op.execute(statement)
    for table in ("memory_revisions", "memories", "memory_bank_configs"):
        op.drop_table(table)
