"""Memory banks, memories and their revisions (seed 000 §2.3, §2.4, §4.1), tenant-scoped.

Additions to the seed: `tenant_id` everywhere; `bank_id` (the bank a memory belongs to); `scope_key`
(the canonical scope string, B-tree indexed, for exact-scope matching); `embedding` and
`embedding_model` (vectors of different models are never compared); `event_time` (when the
remembered thing was said or happened); `valid_from`/`valid_to` (supersession: what was true when);
`revision` (the newest revision number, allocated under the memory's row lock).

PostgreSQL-only structures (the `jsonb_object_keys_count` scope CHECK, the full-text and trigram GIN
indexes, updated_at triggers) and SQLite's FTS5 table are created by migration 0002 only: they are
search structures of `core/search`, which `core/db/migrate.include_object` leaves out of comparisons.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import numpy as np
from sqlalchemy import REAL, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from contextiq.core.clock import utcnow
from contextiq.core.db.base import Base
from contextiq.core.db.types import Embedding, JSONType, StrList, UTCDateTime
from contextiq.core.ids import new_id
from contextiq.core.types import JSON

SOURCE_TYPES = ("generated", "direct", "imported")
ACTIONS = ("CREATED", "UPDATED", "DELETED")
FTS_TABLE = "memories_fts"  # SQLite FTS5 table over memories.fact (migration 0002)


class MemoryBankRow(Base):
    """A memory bank's configuration: topics, TTLs, search and generation settings (seed 000 §4.1)."""

    __tablename__ = "memory_bank_configs"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    memory_topics: Mapped[list[JSON]] = mapped_column(JSONType, default=list)
    few_shot_examples: Mapped[list[JSON] | None] = mapped_column(JSONType)
    ttl_config: Mapped[JSON] = mapped_column(JSONType, default=dict)
    similarity_search_config: Mapped[JSON] = mapped_column(JSONType, default=dict)
    generation_config: Mapped[JSON] = mapped_column(JSONType, default=dict)
    # Addition (migration 0005): the settings of the hybrid reranker; `{}` is the defaults.
    retrieval_config: Mapped[JSON] = mapped_column(JSONType, default=dict, server_default=text("'{}'"))
    enable_revisions: Mapped[bool] = mapped_column(Boolean, default=True)
    scope_keys: Mapped[list[str]] = mapped_column(StrList, default=lambda: ["user_id"])
    metadata_: Mapped[JSON] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (
        Index("uq_memory_bank_configs_tenant_id_name", "tenant_id", "name", unique=True),
        Index("idx_memory_bank_configs_tenant", "tenant_id"),
        Index("idx_memory_bank_configs_active", "is_active", postgresql_where=text("is_active = TRUE")),
    )


class MemoryRow(Base):
    """A long-term memory fact in one scope of one bank (seed 000 §2.3)."""

    __tablename__ = "memories"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    bank_id: Mapped[UUID] = mapped_column(ForeignKey("memory_bank_configs.id", ondelete="CASCADE"))
    scope: Mapped[dict[str, str]] = mapped_column(JSONType)
    scope_key: Mapped[str] = mapped_column(Text)
    fact: Mapped[str] = mapped_column(Text)
    topic: Mapped[str] = mapped_column(String(255))
    confidence: Mapped[float] = mapped_column(REAL, default=1.0)
    source_session_id: Mapped[UUID | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"))
    source_type: Mapped[str] = mapped_column(String(50), default="generated")
    metadata_: Mapped[JSON] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revision_count: Mapped[int] = mapped_column(Integer, default=0)
    is_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # Additions (ARCHITECTURE §2, issue #3 §1).
    # The newest revision number; bumped by every write, even when the bank keeps no revisions, so it
    # is also the version of the cache entry `memory:{id}`.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    embedding: Mapped[np.ndarray | None] = mapped_column(Embedding())
    embedding_model: Mapped[str | None] = mapped_column(String(255))
    event_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("length(fact) <= 2000", name="fact_length"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        CheckConstraint("source_type IN ('generated', 'direct', 'imported')", name="source_type"),
        Index("idx_memories_scope_key", "tenant_id", "bank_id", "scope_key"),
        Index("idx_memories_tenant_created", "tenant_id", "created_at", "id"),
        Index("idx_memories_bank", "bank_id"),
        Index("idx_memories_scope", "scope", postgresql_using="gin"),
        Index("idx_memories_topic", "topic"),
        Index("idx_memories_created_at", "created_at"),
        Index("idx_memories_expires_at", "expires_at", postgresql_where=text("expires_at IS NOT NULL")),
        Index(
            "idx_memories_source_session",
            "source_session_id",
            postgresql_where=text("source_session_id IS NOT NULL"),
        ),
        Index("idx_memories_active", "is_deleted", postgresql_where=text("is_deleted = FALSE")),
        Index(
            "idx_memories_scope_topic", "scope", postgresql_using="gin", postgresql_where=text("topic IS NOT NULL")
        ),
    )


class MemoryRevisionRow(Base):
    """A snapshot of a memory, valid from `valid_from` until `valid_to` (seed 000 §2.4)."""

    __tablename__ = "memory_revisions"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    memory_id: Mapped[UUID] = mapped_column(ForeignKey("memories.id", ondelete="CASCADE"))
    revision_number: Mapped[int] = mapped_column(Integer)
    fact: Mapped[str] = mapped_column(Text)
    topic: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(20))
    source_session_id: Mapped[UUID | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"))
    extracted_memories: Mapped[list[str] | None] = mapped_column(JSONType)
    confidence: Mapped[float] = mapped_column(REAL, default=1.0)
    metadata_: Mapped[JSON] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("revision_number >= 1", name="revision_number_positive"),
        CheckConstraint("length(fact) <= 2000", name="fact_length"),
        CheckConstraint("action IN ('CREATED', 'UPDATED', 'DELETED')", name="action"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        Index("uq_memory_revisions_memory_id_revision_number", "memory_id", "revision_number", unique=True),
        Index("idx_revisions_memory_id", "memory_id"),
        Index("idx_revisions_created_at", "created_at"),
        Index("idx_revisions_action", "action"),
        Index("idx_revisions_memory_timeline", "memory_id", "revision_number"),
        Index("idx_revisions_tenant", "tenant_id"),
    )
