"""The job queue: enqueue inside a caller's transaction, claim with a lease, finish under the lease.

A job runs under a lease: `claim` gives it to one owner until `lease_expires_at`, the owner's
heartbeat extends it, and a lease that runs out makes the job claimable again (its worker died),
until `max_attempts` is spent. Every state change after the claim is fenced on the lease
(`WHERE lease_owner = :owner AND status = 'running'`), so a worker that lost its lease — to another
worker or to a cancel — can no longer finish, fail or commit the job's effects; a handler that
commits effects calls `complete()` in the same transaction, which makes the effects and the job's
end one atomic step.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from contextiq.core.clock import utcnow
from contextiq.core.db.engine import Database
from contextiq.core.errors import Conflict, NotFound
from contextiq.core.ids import new_id
from contextiq.core.jobs.store import JobStore
from contextiq.core.jobs.tables import TERMINAL_STATUSES, JobRow
from contextiq.core.types import JSON

log = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 4000
MAX_BACKOFF_SECONDS = 300.0

FailureHook = Callable[[AsyncSession, JobRow, str, bool], Awaitable[None]]
"""Called in the transaction that records a failure: (db, job, error, final)."""
ReleaseHook = Callable[[AsyncSession, JobRow], Awaitable[None]]
"""Called in the transaction that hands a job back to the queue: (db, job)."""


class LeaseLost(Conflict):
    """The job is no longer running under this lease: it was cancelled or another worker took it."""


class JobFailed(Exception):
    """Raised by a handler to fail its job at once: retrying cannot help (bad input, a deleted source)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A claimed job and the lease under which its owner runs it."""

    job_id: UUID
    tenant_id: UUID | None
    kind: str
    payload: JSON
    attempt: int
    max_attempts: int
    owner: str
    lease_seconds: float

    @property
    def is_last_attempt(self) -> bool:
        """Whether a failure of this attempt fails the job for good."""
        return self.attempt >= self.max_attempts


def backoff_seconds(attempt: int, *, base: float = 2.0) -> float:
    """Return the delay before retrying after failed attempt number `attempt` (1-based)."""
    return min(base ** attempt, MAX_BACKOFF_SECONDS)


class JobQueue:
    """The queue over the jobs table; safe to share by every task and process of a deployment."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._wake: asyncio.Event | None = None
        self._wake_loop: asyncio.AbstractEventLoop | None = None

    # -- producers ------------------------------------------------------------------------------

    async def enqueue(
        self,
        db: AsyncSession,
        *,
        kind: str,
        payload: JSON | None = None,
        tenant_id: UUID | None = None,
        job_id: UUID | None = None,
        max_attempts: int = 3,
        run_after: datetime | None = None,
    ) -> JobRow:
        """Add a pending job inside the caller's transaction; call `notify()` after commit."""
        now = utcnow()
        return await JobStore(db).add(
            JobRow(
                id=job_id or new_id(),
                tenant_id=tenant_id,
                kind=kind,
                payload=dict(payload or {}),
                status="pending",
                attempts=0,
                max_attempts=max_attempts,
                run_after=run_after or now,
                created_at=now,
            )
        )

    def _event(self) -> asyncio.Event:
        # An asyncio.Event belongs to the loop that first waits on it; a queue may outlive a loop.
        loop = asyncio.get_running_loop()
        if self._wake is None or self._wake_loop is not loop:
            self._wake, self._wake_loop = asyncio.Event(), loop
        return self._wake

    def notify(self) -> None:
        """Wake this process's idle workers (others find the job on their next poll)."""
        try:
            self._event().set()
        except RuntimeError:  # no running loop: nobody in this process is waiting
            pass

    async def wait_for_work(self, seconds: float) -> None:
        """Return when `notify()` is called or after `seconds`."""
        wake = self._event()
        try:
            await asyncio.wait_for(wake.wait(), seconds)
        except TimeoutError:
            pass
        wake.clear()

    async def get(self, *, job_id: UUID, tenant_id: UUID | None = None) -> JobRow | None:
        """Return a job, or None (also when it belongs to another tenant)."""
        async with self._db.read() as db:
            return await JobStore(db).get(job_id=job_id, tenant_id=tenant_id)

    async def cancel(self, db: AsyncSession, *, job_id: UUID, tenant_id: UUID | None = None) -> JobRow:
        """Cancel a pending or running job inside the caller's transaction; cancelling twice is a no-op.

        A running job's worker notices at its next heartbeat and stops; its lease no longer fences,
        so it cannot commit effects after this commits.

        Raises:
            NotFound: no such job (for this tenant).
            Conflict: the job already completed or failed.
        """
        row = await JobStore(db).get(job_id=job_id, tenant_id=tenant_id, lock=True)
        if row is None:
            raise NotFound("job", job_id)
        if row.status == "cancelled":
            return row
        if row.status in TERMINAL_STATUSES:
            raise Conflict(f"job {job_id} already {row.status}; only pending or running jobs can be cancelled")
        row.status = "cancelled"
        row.finished_at = utcnow()
        row.lease_owner = None
        row.lease_expires_at = None
        await db.flush()
        return row

    # -- workers --------------------------------------------------------------------------------

    async def claim(
        self,
        *,
        owner: str,
        kinds: Sequence[str],
        lease_seconds: float,
        job_id: UUID | None = None,
        now: datetime | None = None,
    ) -> Lease | None:
        """Lease the oldest claimable job of `kinds` (or exactly `job_id`) to `owner`, or return None."""
        if not kinds:
            return None
        now = now or utcnow()
        token = f"{owner}/{new_id().hex[:12]}"  # one token per claim: a reclaim by the same worker is a new lease
        async with self._db.write() as db:
            row = await JobStore(db).claim(
                owner=token, kinds=kinds, now=now, lease_until=now + timedelta(seconds=lease_seconds), job_id=job_id
            )
            if row is None:
                return None
            return Lease(
                job_id=row.id,
                tenant_id=row.tenant_id,
                kind=row.kind,
                payload=dict(row.payload),
                attempt=row.attempts,
                max_attempts=row.max_attempts,
                owner=token,
                lease_seconds=lease_seconds,
            )

    async def heartbeat(self, lease: Lease, *, now: datetime | None = None) -> bool:
        """Extend a lease; False when the job was cancelled or taken over (stop working on it)."""
        now = now or utcnow()
        async with self._db.write() as db:
            return await JobStore(db).heartbeat(
                job_id=lease.job_id, owner=lease.owner, now=now,
                lease_until=now + timedelta(seconds=lease.lease_seconds),
            )

    async def fence(self, db: AsyncSession, lease: Lease) -> JobRow:
        """Lock the job in the caller's transaction; raise LeaseLost unless `lease` still holds it."""
        row = await JobStore(db).locked_lease(job_id=lease.job_id, owner=lease.owner)
        if row is None:
            raise LeaseLost(f"job {lease.job_id} is no longer running under lease {lease.owner}")
        return row

    async def complete(self, db: AsyncSession, lease: Lease) -> None:
        """Mark the job completed in the caller's transaction (with the effects it commits).

        Raises:
            LeaseLost: the lease no longer holds the job; the transaction must roll back.
        """
        done = await JobStore(db).set_state(
            job_id=lease.job_id, owner=lease.owner, status="completed", finished_at=utcnow(),
            lease_owner=None, lease_expires_at=None, last_error=None,
        )
        if not done:
            raise LeaseLost(f"job {lease.job_id} is no longer running under lease {lease.owner}")

    async def finish(self, lease: Lease) -> bool:
        """Mark the job completed in a transaction of its own; False if the lease was lost."""
        async with self._db.write() as db:
            try:
                await self.complete(db, lease)
            except LeaseLost:
                return False
        return True

    async def fail(
        self, lease: Lease, *, error: str, on_failure: FailureHook | None = None, permanent: bool = False
    ) -> str:
        """Record a failed attempt: retry later while attempts remain, else fail; return the new status.

        A `permanent` failure is not retried. Returns `"lost"` (and changes nothing) when the lease
        no longer holds the job.
        """
        error = error[:MAX_ERROR_LENGTH]
        now = utcnow()
        async with self._db.write() as db:
            row = await JobStore(db).locked_lease(job_id=lease.job_id, owner=lease.owner)
            if row is None:
                return "lost"
            final = permanent or row.attempts >= row.max_attempts
            row.last_error = error
            row.lease_owner = None
            row.lease_expires_at = None
            if final:
                row.status = "failed"
                row.finished_at = now
            else:
                row.status = "pending"
                row.run_after = now + timedelta(seconds=backoff_seconds(row.attempts))
            await db.flush()
            if on_failure is not None:
                await on_failure(db, row, error, final)
            return row.status

    async def release(self, lease: Lease, *, on_release: ReleaseHook | None = None) -> bool:
        """Give a job back untouched (a worker shutting down): pending now, the attempt not counted."""
        async with self._db.write() as db:
            row = await JobStore(db).locked_lease(job_id=lease.job_id, owner=lease.owner)
            if row is None:
                return False
            row.status = "pending"
            row.attempts = max(row.attempts - 1, 0)
            row.lease_owner = None
            row.lease_expires_at = None
            row.run_after = utcnow()
            await db.flush()
            if on_release is not None:
                await on_release(db, row)
        self.notify()
        return True

    async def reap(
        self, *, on_failure: Mapping[str, FailureHook] | None = None, now: datetime | None = None
    ) -> int:
        """Fail running jobs whose lease ran out on their last attempt; return how many."""
        now = now or utcnow()
        async with self._db.write() as db:
            rows = await JobStore(db).exhausted(now=now)
            for row in rows:
                error = (
                    f"the worker running attempt {row.attempts} of {row.max_attempts} stopped "
                    f"heartbeating (lease expired at {row.lease_expires_at:%Y-%m-%dT%H:%M:%SZ})"
                )
                log.warning("job %s (%s) failed: %s", row.id, row.kind, error)
                row.status = "failed"
                row.finished_at = now
                row.last_error = error
                row.lease_owner = None
                row.lease_expires_at = None
                await db.flush()
                hook = (on_failure or {}).get(row.kind)
                if hook is not None:
                    await hook(db, row, error, True)
            return len(rows)

    async def counts(self, *, kind: str | None = None) -> dict[str, int]:
        """Return the number of jobs per status (for metrics and tests)."""
        async with self._db.read() as db:
            return await JobStore(db).count_by_status(kind=kind)
