"""Queries over generation jobs and their per-event records. Takes an AsyncSession; returns rows or None."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from contextiq.core.jobs.tables import JobRow
from contextiq.memories.generation.tables import GenerationEventRow, GenerationJobRow

ACTIVE = ("pending", "processing")


class GenerationStore:
    """Reads and writes generation jobs inside the caller's transaction."""

    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def add(self, row: GenerationJobRow) -> GenerationJobRow:
        self._db.add(row)
        await self._db.flush()
        return row

    async def get(
        self, *, job_id: UUID, tenant_id: UUID | None = None, lock: bool = False
    ) -> GenerationJobRow | None:
        stmt = select(GenerationJobRow).where(GenerationJobRow.id == job_id)
        if tenant_id is not None:
            stmt = stmt.where(GenerationJobRow.tenant_id == tenant_id)
        if lock:
            stmt = stmt.with_for_update()
        return await self._db.scalar(stmt.execution_options(populate_existing=True))

    async def attempts(self, job_ids: Sequence[UUID]) -> dict[UUID, tuple[int, int]]:
        """Return (attempts, max_attempts) of the queue rows of these jobs."""
        if not job_ids:
            return {}
        stmt = select(JobRow.id, JobRow.attempts, JobRow.max_attempts).where(JobRow.id.in_(list(job_ids)))
        return {row[0]: (row[1], row[2]) for row in (await self._db.execute(stmt)).all()}

    async def list(
        self, *, tenant_id: UUID, status: str | None, after: tuple[datetime, UUID] | None, limit: int
    ) -> Sequence[GenerationJobRow]:
        stmt = select(GenerationJobRow).where(GenerationJobRow.tenant_id == tenant_id)
        if status is not None:
            stmt = stmt.where(GenerationJobRow.status == status)
        if after is not None:
            created, ident = after
            stmt = stmt.where(
                or_(
                    GenerationJobRow.created_at < created,
                    and_(GenerationJobRow.created_at == created, GenerationJobRow.id < ident),
                )
            )
        stmt = stmt.order_by(GenerationJobRow.created_at.desc(), GenerationJobRow.id.desc()).limit(limit)
        return (await self._db.scalars(stmt)).all()

    async def update_active(self, *, job_id: UUID, **values: Any) -> bool:
        """Update a job that is still pending or processing (never one cancelled meanwhile)."""
        result: Any = await self._db.execute(
            update(GenerationJobRow)
            .where(GenerationJobRow.id == job_id, GenerationJobRow.status.in_(ACTIVE))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)

    async def add_events(self, rows: Sequence[GenerationEventRow]) -> None:
        self._db.add_all(list(rows))
        await self._db.flush()

    async def has_events(self, *, job_id: UUID) -> bool:
        stmt = select(GenerationEventRow.position).where(GenerationEventRow.job_id == job_id).limit(1)
        return (await self._db.scalar(stmt)) is not None

    async def list_events(
        self, *, tenant_id: UUID, job_id: UUID, status: str | None, after_position: int | None, limit: int
    ) -> Sequence[GenerationEventRow]:
        stmt = select(GenerationEventRow).where(
            GenerationEventRow.tenant_id == tenant_id, GenerationEventRow.job_id == job_id
        )
        if status is not None:
            stmt = stmt.where(GenerationEventRow.status == status)
        if after_position is not None:
            stmt = stmt.where(GenerationEventRow.position > after_position)
        stmt = stmt.order_by(GenerationEventRow.position).limit(limit)
        return (await self._db.scalars(stmt)).all()
