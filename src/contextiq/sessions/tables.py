"""Sessions, their events, and the app- and user-level state shared across sessions (seed 000 §2.1–2.2)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from contextiq.core.clock import utcnow
from contextiq.core.db.base import Base
from contextiq.core.db.types import JSONType, UTCDateTime
from contextiq.core.ids import new_id
from contextiq.core.types import JSON

AUTHORS = ("user", "agent", "tool", "system")


class SessionRow(Base):
    __tablename__ = "sessions"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(255))
    agent_id: Mapped[str | None] = mapped_column(String(255))
    scope: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    state: Mapped[JSON] = mapped_column(JSONType, default=dict)
    metadata_: Mapped[JSON] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    parent_session_id: Mapped[UUID | None] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    # Bumped by every write: the ETag, and the guard against stale cache entries.
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    # Sequence number of the newest event; appends take the next one under the session's row lock.
    last_sequence: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        Index("idx_sessions_tenant_created", "tenant_id", "created_at", "id"),
        Index("idx_sessions_tenant_user", "tenant_id", "user_id"),
        Index("idx_sessions_agent_id", "agent_id", postgresql_where=text("agent_id IS NOT NULL")),
        Index("idx_sessions_scope", "scope", postgresql_using="gin"),
        Index("idx_sessions_active", "is_active", postgresql_where=text("is_active = TRUE")),
        Index("idx_sessions_expires_at", "expires_at", postgresql_where=text("expires_at IS NOT NULL")),
        Index(
            "idx_sessions_parent",
            "parent_session_id",
            postgresql_where=text("parent_session_id IS NOT NULL"),
        ),
    )


class EventRow(Base):
    """One event of a session. Append-only; range-partitioned by month on PostgreSQL."""

    __tablename__ = "events"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    # Part of the key because PostgreSQL requires the partition key in every unique constraint.
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, default=utcnow)
    tenant_id: Mapped[UUID] = mapped_column()
    session_id: Mapped[UUID] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(BigInteger)
    author: Mapped[str] = mapped_column(String(50))
    invocation_id: Mapped[str] = mapped_column(String(255))
    content: Mapped[JSON] = mapped_column(JSONType)
    actions: Mapped[JSON | None] = mapped_column(JSONType)
    metadata_: Mapped[JSON] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("author IN ('user', 'agent', 'tool', 'system')", name="author"),
        Index("idx_events_session_sequence", "session_id", "sequence"),
        Index("idx_events_session_timeline", "session_id", "timestamp"),
        Index("idx_events_invocation_id", "invocation_id"),
        Index("idx_events_author", "author"),
        {"postgresql_partition_by": "RANGE (timestamp)"},
    )


class AppStateRow(Base):
    """`app:` state: shared by every session of one agent in a tenant (ADK semantics)."""

    __tablename__ = "app_states"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[JSON] = mapped_column(JSONType, default=dict)
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserStateRow(Base):
    """`user:` state: shared by every session of one user with one agent in a tenant."""

    __tablename__ = "user_states"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[JSON] = mapped_column(JSONType, default=dict)
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

