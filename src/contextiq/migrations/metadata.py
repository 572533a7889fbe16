"""Import every context's tables so that the shared metadata is complete."""

from __future__ import annotations

from sqlalchemy import MetaData


def target_metadata() -> MetaData:
    """Return the metadata of every table ContextIQ defines."""
    import contextiq.core.idempotency
    import contextiq.core.jobs.tables
    import contextiq.memories.generation.tables
    import contextiq.memories.tables
    import contextiq.platform.tables
    import contextiq.sessions.tables  # noqa: F401
    from contextiq.core.db.base import Base

    return Base.metadata
