"""jobs: the job queue, memory generation jobs and their per-event records

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from contextiq.core.db.types import JSONType, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _pg() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    pg = _pg()

    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid()),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_expires_at", UTCDateTime()),
        sa.Column("heartbeat_at", UTCDateTime()),
        sa.Column("run_after", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("last_error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["organizations.id"], ondelete="CASCADE", name="fk_jobs_tenant_id_organizations"
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')", name="ck_jobs_status"
        ),
        sa.CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="ck_jobs_attempts"),
    )
    op.create_index(
        "idx_jobs_pending_run_after", "jobs", ["run_after"],
        postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "idx_jobs_running_lease", "jobs", ["lease_expires_at"],
        postgresql_where=sa.text("status = 'running'"), sqlite_where=sa.text("status = 'running'"),
    )
    op.create_index("idx_jobs_tenant_created", "jobs", ["tenant_id", "created_at", "id"])
    op.create_index("idx_jobs_kind_status", "jobs", ["kind", "status"])

    op.create_table(
        "memory_generation_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("bank_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("source_type", sa.String(50), nullable=False),
        sa.Column("source_reference", sa.Text(), nullable=False),
        sa.Column("scope", JSONType, nullable=False),
        sa.Column("scope_key", sa.String(512), nullable=False),
        sa.Column("config", JSONType, nullable=False),
        sa.Column("result", JSONType),
        sa.Column("error_message", sa.Text()),
        sa.Column("progress", sa.REAL(), nullable=False),
        sa.Column("stage", sa.String(20), nullable=False),
        sa.Column("source_events", JSONType),
        sa.Column("source_sequence", sa.BigInteger()),
        sa.Column("extracted_memories", JSONType),
        sa.Column("extractor", sa.String(255)),
        sa.Column("usage", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("completed_at", UTCDateTime()),
        sa.Column("applied_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_memory_generation_jobs"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["organizations.id"], ondelete="CASCADE",
            name="fk_memory_generation_jobs_tenant_id_organizations",
        ),
        sa.ForeignKeyConstraint(
            ["bank_id"], ["memory_bank_configs.id"], ondelete="CASCADE",
            name="fk_memory_generation_jobs_bank_id_memory_bank_configs",
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')",
            name="ck_memory_generation_jobs_status",
        ),
        sa.CheckConstraint(
            "source_type IN ('session', 'events', 'facts')", name="ck_memory_generation_jobs_source_type"
        ),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name="ck_memory_generation_jobs_progress"),
    )
    op.create_index(
        "idx_generation_jobs_tenant_created", "memory_generation_jobs", ["tenant_id", "created_at", "id"]
    )
    op.create_index("idx_generation_jobs_tenant_scope", "memory_generation_jobs", ["tenant_id", "scope_key"])
    op.create_index("idx_generation_jobs_bank", "memory_generation_jobs", ["bank_id"])
    op.create_index("idx_generation_jobs_status", "memory_generation_jobs", ["status"])
    op.create_index("idx_generation_jobs_status_created", "memory_generation_jobs", ["status", "created_at"])
    op.create_index("idx_generation_jobs_scope", "memory_generation_jobs", ["scope"], postgresql_using="gin")

    op.create_table(
        "memory_generation_job_events",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("author", sa.String(50)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("candidate_count", sa.Integer(), nullable=False),
        sa.Column("memory_ids", JSONType, nullable=False),
        sa.Column("excerpt", sa.Text()),
        sa.Column("event_time", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "position", name="pk_memory_generation_job_events"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["memory_generation_jobs.id"], ondelete="CASCADE",
            name="fk_memory_generation_job_events_job_id_memory_generation_jobs",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["organizations.id"], ondelete="CASCADE",
            name="fk_memory_generation_job_events_tenant_id_organizations",
        ),
        sa.CheckConstraint(
            "status IN ('extracted', 'skipped', 'failed')", name="ck_memory_generation_job_events_status"
        ),
    )
    op.create_index(
        "idx_generation_job_events_event", "memory_generation_job_events", ["job_id", "event_id"]
    )

    if pg:
        # seed 000 §2.1: a scope has at most five keys.
        op.execute(
            "ALTER TABLE memory_generation_jobs ADD CONSTRAINT ck_memory_generation_jobs_scope_max_keys "
            "CHECK (jsonb_typeof(scope) = 'object' AND jsonb_object_keys_count(scope) <= 5)"
        )


def downgrade() -> None:
    for table in ("memory_generation_job_events", "memory_generation_jobs", "jobs"):
        op.drop_table(table)
