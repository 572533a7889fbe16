"""The job queue on both dialects: claims, leases, heartbeats, fencing, retries, cancel, reaping."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from contextiq.core.clock import utcnow
from contextiq.core.errors import Conflict, NotFound
from contextiq.core.jobs import JobQueue, JobRow, LeaseLost
from contextiq.runtime import Runtime


@pytest.fixture
def queue(runtime: Runtime) -> JobQueue:
    return JobQueue(runtime.db)


@pytest.fixture
def kind() -> str:
    # The database is shared by the session's tests: a kind of its own keeps each test's jobs apart.
    return f"test.{uuid.uuid4().hex[:10]}"


async def enqueue(rt: Runtime, queue: JobQueue, kind: str, *, n: int = 1, **extra: object) -> list[uuid.UUID]:
    ids = []
    async with rt.db.write() as db:
        for i in range(n):
            row = await queue.enqueue(db, kind=kind, payload={"i": i}, **extra)  # type: ignore[arg-type]
            ids.append(row.id)
    return ids


async def test_claim_leases_the_oldest_job_once(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    first, second = await enqueue(runtime, queue, kind, n=2)
    lease = await queue.claim(owner="w1", kinds=[kind], lease_seconds=30)
    assert lease is not None and lease.job_id == first
    assert lease.attempt == 1 and lease.payload == {"i": 0} and lease.owner.startswith("w1/")
    row = await queue.get(job_id=first)
    assert row is not None and row.status == "running" and row.lease_owner == lease.owner
    assert row.started_at is not None and row.lease_expires_at is not None and row.heartbeat_at is not None
    other = await queue.claim(owner="w2", kinds=[kind], lease_seconds=30)
    assert other is not None and other.job_id == second
    assert await queue.claim(owner="w3", kinds=[kind], lease_seconds=30) is None


async def test_claim_ignores_other_kinds_and_future_jobs(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    await enqueue(runtime, queue, kind, run_after=utcnow() + timedelta(hours=1))
    assert await queue.claim(owner="w", kinds=[kind + ".other"], lease_seconds=30) is None
    assert await queue.claim(owner="w", kinds=[kind], lease_seconds=30) is None
    later = await queue.claim(owner="w", kinds=[kind], lease_seconds=30, now=utcnow() + timedelta(hours=2))
    assert later is not None


async def test_claim_of_a_named_job(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    _first, second = await enqueue(runtime, queue, kind, n=2)
    lease = await queue.claim(owner="w", kinds=[kind], lease_seconds=30, job_id=second)
    assert lease is not None and lease.job_id == second
    assert await queue.claim(owner="w", kinds=[kind], lease_seconds=30, job_id=second) is None


async def test_concurrent_claims_take_each_job_exactly_once(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    ids = await enqueue(runtime, queue, kind, n=12)

    async def claimer(name: str) -> list[uuid.UUID]:
        got = []
        while (lease := await queue.claim(owner=name, kinds=[kind], lease_seconds=30)) is not None:
            got.append(lease.job_id)
        return got

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(6)))
    claimed = [job for got in results for job in got]
    assert sorted(claimed) == sorted(ids)


async def test_expired_lease_makes_the_job_claimable_and_fences_the_old_owner(
    runtime: Runtime, queue: JobQueue, kind: str
) -> None:
    (job_id,) = await enqueue(runtime, queue, kind)
    old = await queue.claim(owner="dead", kinds=[kind], lease_seconds=5)
    assert old is not None
    assert await queue.claim(owner="w2", kinds=[kind], lease_seconds=5) is None  # lease still valid
    new = await queue.claim(owner="w2", kinds=[kind], lease_seconds=5, now=utcnow() + timedelta(seconds=6))
    assert new is not None and new.job_id == job_id and new.attempt == 2
    # The old owner can no longer heartbeat, complete or fail the job.
    assert not await queue.heartbeat(old)
    with pytest.raises(LeaseLost):
        async with runtime.db.write() as db:
            await queue.complete(db, old)
    assert await queue.fail(old, error="late") == "lost"
    assert await queue.heartbeat(new)
    assert await queue.finish(new)
    row = await queue.get(job_id=job_id)
    assert row is not None and row.status == "completed" and row.finished_at is not None
    assert row.lease_owner is None


async def test_heartbeat_extends_the_lease(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    (job_id,) = await enqueue(runtime, queue, kind)
    lease = await queue.claim(owner="w", kinds=[kind], lease_seconds=5)
    assert lease is not None
    later = utcnow() + timedelta(seconds=4)
    assert await queue.heartbeat(lease, now=later)
    # 6 s after the claim the original lease would have run out, but the heartbeat moved it.
    assert await queue.claim(owner="w2", kinds=[kind], lease_seconds=5, now=utcnow() + timedelta(seconds=6)) is None
    row = await queue.get(job_id=job_id)
    assert row is not None and row.lease_expires_at is not None
    assert row.lease_expires_at >= later + timedelta(seconds=4)


async def test_failed_attempt_is_retried_with_backoff_then_fails(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    (job_id,) = await enqueue(runtime, queue, kind, max_attempts=2)
    calls: list[tuple[str, bool]] = []

    async def hook(db: AsyncSession, job: JobRow, error: str, final: bool) -> None:
        calls.append((error, final))

    first = await queue.claim(owner="w", kinds=[kind], lease_seconds=30)
    assert first is not None
    assert await queue.fail(first, error="boom 1", on_failure=hook) == "pending"
    row = await queue.get(job_id=job_id)
    assert row is not None and row.status == "pending" and row.last_error == "boom 1"
    assert row.run_after > utcnow()  # backoff
    assert await queue.claim(owner="w", kinds=[kind], lease_seconds=30) is None
    second = await queue.claim(owner="w", kinds=[kind], lease_seconds=30, now=utcnow() + timedelta(minutes=10))
    assert second is not None and second.attempt == 2 and second.is_last_attempt
    assert await queue.fail(second, error="boom 2", on_failure=hook) == "failed"
    row = await queue.get(job_id=job_id)
    assert row is not None and row.status == "failed" and row.finished_at is not None
    assert calls == [("boom 1", False), ("boom 2", True)]


async def test_reap_fails_a_job_whose_last_attempt_lost_its_worker(
    runtime: Runtime, queue: JobQueue, kind: str
) -> None:
    (job_id,) = await enqueue(runtime, queue, kind, max_attempts=1)
    lease = await queue.claim(owner="dead", kinds=[kind], lease_seconds=5)
    assert lease is not None
    future = utcnow() + timedelta(seconds=6)
    # No attempts left: not claimable again, and the reaper fails it.
    assert await queue.claim(owner="w", kinds=[kind], lease_seconds=5, now=future) is None
    finals: list[bool] = []

    async def hook(db: AsyncSession, job: JobRow, error: str, final: bool) -> None:
        if job.id == job_id:
            finals.append(final)

    assert await queue.reap(on_failure={kind: hook}, now=future) >= 1
    row = await queue.get(job_id=job_id)
    assert row is not None and row.status == "failed" and "stopped heartbeating" in (row.last_error or "")
    assert finals == [True]


async def test_release_gives_the_job_back_without_counting_the_attempt(
    runtime: Runtime, queue: JobQueue, kind: str
) -> None:
    (job_id,) = await enqueue(runtime, queue, kind)
    lease = await queue.claim(owner="w", kinds=[kind], lease_seconds=30)
    assert lease is not None
    assert await queue.release(lease)
    again = await queue.claim(owner="w2", kinds=[kind], lease_seconds=30)
    assert again is not None and again.job_id == job_id and again.attempt == 1


async def test_cancel(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    pending, running, done = await enqueue(runtime, queue, kind, n=3)
    lease_running = await queue.claim(owner="w", kinds=[kind], lease_seconds=30, job_id=running)
    lease_done = await queue.claim(owner="w", kinds=[kind], lease_seconds=30, job_id=done)
    assert lease_running is not None and lease_done is not None
    assert await queue.finish(lease_done)
    async with runtime.db.write() as db:
        assert (await queue.cancel(db, job_id=pending)).status == "cancelled"
        assert (await queue.cancel(db, job_id=running)).status == "cancelled"
        assert (await queue.cancel(db, job_id=running)).status == "cancelled"  # twice is fine
    with pytest.raises(Conflict):
        async with runtime.db.write() as db:
            await queue.cancel(db, job_id=done)
    with pytest.raises(NotFound):
        async with runtime.db.write() as db:
            await queue.cancel(db, job_id=uuid.uuid4())
    assert await queue.claim(owner="w", kinds=[kind], lease_seconds=30) is None
    assert not await queue.heartbeat(lease_running)  # the worker learns it should stop


async def test_cancel_is_tenant_scoped(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    from tests.conftest import new_tenant

    tenant = await new_tenant(runtime)
    (job_id,) = await enqueue(runtime, queue, kind, tenant_id=tenant.id)
    with pytest.raises(NotFound):
        async with runtime.db.write() as db:
            await queue.cancel(db, job_id=job_id, tenant_id=uuid.uuid4())
    assert await queue.get(job_id=job_id, tenant_id=uuid.uuid4()) is None
    assert await queue.get(job_id=job_id, tenant_id=tenant.id) is not None


async def test_complete_rolls_back_with_the_effects(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    (job_id,) = await enqueue(runtime, queue, kind)
    lease = await queue.claim(owner="w", kinds=[kind], lease_seconds=30)
    assert lease is not None
    with pytest.raises(RuntimeError):
        async with runtime.db.write() as db:
            await queue.fence(db, lease)
            await queue.complete(db, lease)
            raise RuntimeError("crash before commit")
    row = await queue.get(job_id=job_id)
    assert row is not None and row.status == "running"
