"""foundation: organizations, users, api keys, sessions, events, shared state, idempotency keys

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from contextiq.core.clock import utcnow
from contextiq.core.db.partitions import monthly_partition_ddl
from contextiq.core.db.types import JSONType, StrList, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

EXTENSIONS = ("uuid-ossp", "pgcrypto", "pg_trgm", "btree_gin")


def _pg() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _pg_functions() -> None:
    for ext in EXTENSIONS:
        op.execute(f'CREATE EXTENSION IF NOT EXISTS "{ext}"')
    # pgvector is optional here (seed 000 §1.1); later revisions that need it check again.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') "
        "THEN CREATE EXTENSION IF NOT EXISTS vector; END IF; END $$"
    )
    op.execute(
        "CREATE OR REPLACE FUNCTION jsonb_object_keys_count(jsonb) RETURNS INTEGER AS $$ "
        "SELECT COUNT(*)::INTEGER FROM jsonb_object_keys($1); $$ LANGUAGE SQL IMMUTABLE"
    )
    op.execute(
        "CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS TRIGGER AS $$ "
        "BEGIN NEW.updated_at = NOW(); RETURN NEW; END; $$ LANGUAGE plpgsql"
    )


def _updated_at_trigger(table: str) -> None:
    op.execute(
        f"CREATE TRIGGER update_{table}_updated_at BEFORE UPDATE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION update_updated_at_column()"
    )


def upgrade() -> None:
    pg = _pg()
    if pg:
        _pg_functions()

    op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.Column("logo_url", sa.Text()),
        sa.Column("settings", JSONType, nullable=False),
        sa.Column("max_agents", sa.Integer(), nullable=False),
        sa.Column("max_executions_per_month", sa.Integer(), nullable=False),
        sa.Column("max_team_members", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_organizations"),
        sa.UniqueConstraint("slug", name="uq_organizations_slug"),
    )
    op.create_index(
        "idx_organizations_deleted_at", "organizations", ["deleted_at"],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )

    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("email_verified_at", UTCDateTime()),
        sa.Column("password_hash", sa.String(255)),
        sa.Column("full_name", sa.String(255)),
        sa.Column("avatar_url", sa.Text()),
        sa.Column("organization_id", sa.Uuid()),
        sa.Column("role", sa.String(50), nullable=False),
        sa.Column("last_login_at", UTCDateTime()),
        sa.Column("mfa_enabled", sa.Boolean(), nullable=False),
        sa.Column("mfa_secret", sa.String(255)),
        sa.Column("google_id", sa.String(255)),
        sa.Column("github_id", sa.String(255)),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], ondelete="SET NULL",
            name="fk_users_organization_id_organizations",
        ),
    )
    op.create_index("ix_users_organization_id", "users", ["organization_id"])
    op.create_index(
        "idx_users_email", "users", ["email"], unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"), sqlite_where=sa.text("deleted_at IS NULL"),
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid()),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key_prefix", sa.String(12), nullable=False),
        sa.Column("key_hash", sa.String(255), nullable=False),
        sa.Column("scopes", StrList, nullable=False),
        sa.Column("rate_limit", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("last_used_at", UTCDateTime()),
        sa.Column("revoked_at", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_api_keys_user_id_users"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], ondelete="CASCADE",
            name="fk_api_keys_organization_id_organizations",
        ),
    )
    op.create_index("ix_api_keys_key_prefix", "api_keys", ["key_prefix"])
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_index("ix_api_keys_organization_id", "api_keys", ["organization_id"])

    op.create_table(
        "sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("agent_id", sa.String(255)),
        sa.Column("scope", JSONType, nullable=False),
        sa.Column("state", JSONType, nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("parent_session_id", sa.Uuid()),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["organizations.id"], ondelete="CASCADE",
            name="fk_sessions_tenant_id_organizations",
        ),
        sa.ForeignKeyConstraint(
            ["parent_session_id"], ["sessions.id"], ondelete="CASCADE",
            name="fk_sessions_parent_session_id_sessions",
        ),
    )
    op.create_index("idx_sessions_tenant_created", "sessions", ["tenant_id", "created_at", "id"])
    op.create_index("idx_sessions_tenant_user", "sessions", ["tenant_id", "user_id"])
    op.create_index(
        "idx_sessions_agent_id", "sessions", ["agent_id"], postgresql_where=sa.text("agent_id IS NOT NULL")
    )
    op.create_index("idx_sessions_scope", "sessions", ["scope"], postgresql_using="gin")
    op.create_index(
        "idx_sessions_active", "sessions", ["is_active"], postgresql_where=sa.text("is_active = TRUE")
    )
    op.create_index(
        "idx_sessions_expires_at", "sessions", ["expires_at"],
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )
    op.create_index(
        "idx_sessions_parent", "sessions", ["parent_session_id"],
        postgresql_where=sa.text("parent_session_id IS NOT NULL"),
    )

    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("timestamp", UTCDateTime(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("author", sa.String(50), nullable=False),
        sa.Column("invocation_id", sa.String(255), nullable=False),
        sa.Column("content", JSONType, nullable=False),
        sa.Column("actions", JSONType),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", "timestamp", name="pk_events"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], ondelete="CASCADE", name="fk_events_session_id_sessions"
        ),
        sa.CheckConstraint("author IN ('user', 'agent', 'tool', 'system')", name="ck_events_author"),
        postgresql_partition_by="RANGE (timestamp)",
    )
    op.create_index("idx_events_session_sequence", "events", ["session_id", "sequence"])
    op.create_index("idx_events_session_timeline", "events", ["session_id", "timestamp"])
    op.create_index("idx_events_invocation_id", "events", ["invocation_id"])
    op.create_index("idx_events_author", "events", ["author"])
    if pg:
        op.execute("CREATE TABLE IF NOT EXISTS events_default PARTITION OF events DEFAULT")
        for statement in monthly_partition_ddl(table="events", today=utcnow()):
            op.execute(statement)

    for table, keys in (("app_states", ["agent_id"]), ("user_states", ["agent_id", "user_id"])):
        op.create_table(
            table,
            sa.Column("tenant_id", sa.Uuid(), nullable=False),
            *[sa.Column(k, sa.String(255), nullable=False) for k in keys],
            sa.Column("state", JSONType, nullable=False),
            sa.Column("version", sa.BigInteger(), nullable=False),
            sa.Column("updated_at", UTCDateTime(), nullable=False),
            sa.PrimaryKeyConstraint("tenant_id", *keys, name=f"pk_{table}"),
            sa.ForeignKeyConstraint(
                ["tenant_id"], ["organizations.id"], ondelete="CASCADE",
                name=f"fk_{table}_tenant_id_organizations",
            ),
        )

    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "key", "operation", name="pk_idempotency_keys"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["organizations.id"], ondelete="CASCADE",
            name="fk_idempotency_keys_tenant_id_organizations",
        ),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])

    if pg:
        op.execute(
            "ALTER TABLE sessions ADD CONSTRAINT ck_sessions_scope_max_keys "
            "CHECK (jsonb_typeof(scope) = 'object' AND jsonb_object_keys_count(scope) <= 5)"
        )
        for table in ("organizations", "users", "sessions"):
            _updated_at_trigger(table)


def downgrade() -> None:
    for table in ("idempotency_keys", "user_states", "app_states", "events", "sessions", "api_keys", "users",
                  "organizations"):
        op.drop_table(table)
    if _pg():
        op.execute("DROP FUNCTION IF EXISTS update_updated_at_column() CASCADE")
        op.execute("DROP FUNCTION IF EXISTS jsonb_object_keys_count(jsonb) CASCADE")
