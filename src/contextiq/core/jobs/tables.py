"""The job queue's one table: what to run, who holds it (a lease) and how it ended."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from contextiq.core.clock import utcnow
from contextiq.core.db.base import Base
from contextiq.core.db.types import JSONType, UTCDateTime
from contextiq.core.ids import new_id
from contextiq.core.types import JSON

JOB_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


class JobRow(Base):
    """One unit of background work. A running job belongs to `lease_owner` until `lease_expires_at`."""

    __tablename__ = "jobs"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    # Null for deployment-wide work (sweeps); every API-visible job has a tenant.
    tenant_id: Mapped[UUID | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[JSON] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')", name="status"
        ),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
        # The two claim paths: due pending jobs, and running jobs whose lease ran out.
        Index(
            "idx_jobs_pending_run_after", "run_after",
            postgresql_where=text("status = 'pending'"), sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "idx_jobs_running_lease", "lease_expires_at",
            postgresql_where=text("status = 'running'"), sqlite_where=text("status = 'running'"),
        ),
        Index("idx_jobs_tenant_created", "tenant_id", "created_at", "id"),
        Index("idx_jobs_kind_status", "kind", "status"),
    )
