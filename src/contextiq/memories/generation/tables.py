"""Memory generation jobs (seed 000 §2.5) and the per-event record of what each job made of each event."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import REAL, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from contextiq.core.clock import utcnow
from contextiq.core.db.base import Base
from contextiq.core.db.types import JSONType, UTCDateTime
from contextiq.core.types import JSON

GENERATION_STATUSES = ("pending", "processing", "completed", "failed", "cancelled")
SOURCE_TYPES = ("session", "events", "facts")
EVENT_STATUSES = ("extracted", "skipped", "failed")


class GenerationJobRow(Base):
    """One `POST /v1/memories:generate`. Its id is also the id of its row in the `jobs` queue."""

    __tablename__ = "memory_generation_jobs"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    bank_id: Mapped[UUID] = mapped_column(ForeignKey("memory_bank_configs.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    source_type: Mapped[str] = mapped_column(String(50))
    source_reference: Mapped[str] = mapped_column(Text)
    scope: Mapped[dict[str, str]] = mapped_column(JSONType)
    scope_key: Mapped[str] = mapped_column(String(512))
    config: Mapped[JSON] = mapped_column(JSONType, default=dict)
    result: Mapped[JSON | None] = mapped_column(JSONType)
    error_message: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(REAL, default=0.0)
    # The last step finished: queued, loaded, extracted, consolidated, applied.
    stage: Mapped[str] = mapped_column(String(20), default="queued")
    # The input as it was when the job was created: inline events or facts; for a session, the
    # sequence of its newest event then (events appended later belong to a later job).
    source_events: Mapped[list[JSON] | None] = mapped_column(JSONType)
    source_sequence: Mapped[int | None] = mapped_column(BigInteger)
    # The raw candidate facts of the extraction, before consolidation.
    extracted_memories: Mapped[list[JSON] | None] = mapped_column(JSONType)
    # "offline" or "llm:<model>", and the tokens the LLM calls used.
    extractor: Mapped[str | None] = mapped_column(String(255))
    usage: Mapped[JSON] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set in the transaction that writes the job's memories: a job is applied at most once.
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')", name="status"
        ),
        CheckConstraint("source_type IN ('session', 'events', 'facts')", name="source_type"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress"),
        Index("idx_generation_jobs_tenant_created", "tenant_id", "created_at", "id"),
        Index("idx_generation_jobs_tenant_scope", "tenant_id", "scope_key"),
        Index("idx_generation_jobs_bank", "bank_id"),
        Index("idx_generation_jobs_status", "status"),
        Index("idx_generation_jobs_status_created", "status", "created_at"),
        Index("idx_generation_jobs_scope", "scope", postgresql_using="gin"),
    )


class GenerationEventRow(Base):
    """What one job made of one source event: extracted (with the memories touched), skipped or failed."""

    __tablename__ = "memory_generation_job_events"

    job_id: Mapped[UUID] = mapped_column(
        ForeignKey("memory_generation_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(255))
    author: Mapped[str | None] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    candidate_count: Mapped[int] = mapped_column(Integer, default=0)
    memory_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    excerpt: Mapped[str | None] = mapped_column(Text)
    event_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("status IN ('extracted', 'skipped', 'failed')", name="status"),
        Index("idx_generation_job_events_event", "job_id", "event_id"),
    )
