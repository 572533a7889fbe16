"""Queries over the jobs table. Takes an AsyncSession; returns rows or None.

Claiming is one statement per dialect: PostgreSQL picks the row with `FOR UPDATE SKIP LOCKED`, so
concurrent workers never block on (or take) each other's row; SQLite runs the same single
`UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING` inside `BEGIN IMMEDIATE`, which already makes
it the only writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from contextiq.core.jobs.tables import JobRow


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Due pending jobs, and running jobs whose lease ran out with attempts left."""
    return or_(
        and_(JobRow.status == "pending", JobRow.run_after <= now),
        and_(
            JobRow.status == "running",
            JobRow.lease_expires_at < now,
            JobRow.attempts < JobRow.max_attempts,
        ),
    )


class JobStore:
    """Reads and writes job rows inside the caller's transaction."""

    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    @property
    def _is_postgres(self) -> bool:
        return self._db.get_bind().dialect.name == "postgresql"

    async def add(self, row: JobRow) -> JobRow:
        self._db.add(row)
        await self._db.flush()
        return row

    async def get(self, *, job_id: UUID, tenant_id: UUID | None = None, lock: bool = False) -> JobRow | None:
        stmt = select(JobRow).where(JobRow.id == job_id)
        if tenant_id is not None:
            stmt = stmt.where(JobRow.tenant_id == tenant_id)
        if lock:
            stmt = stmt.with_for_update()
        return await self._db.scalar(stmt.execution_options(populate_existing=True))

    async def claim(
        self,
        *,
        owner: str,
        kinds: Sequence[str],
        now: datetime,
        lease_until: datetime,
        job_id: UUID | None = None,
    ) -> JobRow | None:
        """Take the oldest claimable job of `kinds` (or exactly `job_id`) for `owner`; return it."""
        pick = select(JobRow.id).where(_claimable(now), JobRow.kind.in_(list(kinds)))
        if job_id is not None:
            pick = pick.where(JobRow.id == job_id)
        pick = pick.order_by(JobRow.run_after, JobRow.id).limit(1)
        if self._is_postgres:
            pick = pick.with_for_update(skip_locked=True)
        stmt = (
            update(JobRow)
            .where(JobRow.id == pick.scalar_subquery())
            .values(
                status="running",
                lease_owner=owner,
                lease_expires_at=lease_until,
                heartbeat_at=now,
                attempts=JobRow.attempts + 1,
                started_at=func.coalesce(JobRow.started_at, now),
            )
            .returning(JobRow)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self._db.scalars(stmt)).first()

    async def heartbeat(self, *, job_id: UUID, owner: str, now: datetime, lease_until: datetime) -> bool:
        """Extend `owner`'s lease; False when the job is no longer running under that lease."""
        result: Any = await self._db.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.lease_owner == owner, JobRow.status == "running")
            .values(heartbeat_at=now, lease_expires_at=lease_until)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)

    async def locked_lease(self, *, job_id: UUID, owner: str) -> JobRow | None:
        """Lock and return the job if `owner` still holds it running; None otherwise."""
        stmt = (
            select(JobRow)
            .where(JobRow.id == job_id, JobRow.lease_owner == owner, JobRow.status == "running")
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return await self._db.scalar(stmt)

    async def set_state(self, *, job_id: UUID, owner: str | None, **values: Any) -> bool:
        """Update a job still running under `owner` (any running job when None); return whether it was."""
        stmt = update(JobRow).where(JobRow.id == job_id, JobRow.status == "running")
        if owner is not None:
            stmt = stmt.where(JobRow.lease_owner == owner)
        result: Any = await self._db.execute(
            stmt.values(**values).execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)

    async def exhausted(self, *, now: datetime, limit: int = 100) -> Sequence[JobRow]:
        """Lock running jobs whose lease ran out on their last attempt (their worker died)."""
        stmt = (
            select(JobRow)
            .where(
                JobRow.status == "running",
                JobRow.lease_expires_at < now,
                JobRow.attempts >= JobRow.max_attempts,
            )
            .order_by(JobRow.lease_expires_at)
            .limit(limit)
        )
        if self._is_postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        return (await self._db.scalars(stmt.execution_options(populate_existing=True))).all()

    async def count_by_status(self, *, kind: str | None = None) -> dict[str, int]:
        stmt = select(JobRow.status, func.count()).group_by(JobRow.status)
        if kind is not None:
            stmt = stmt.where(JobRow.kind == kind)
        return {status: int(n) for status, n in (await self._db.execute(stmt)).all()}
