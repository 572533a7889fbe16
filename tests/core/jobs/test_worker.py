"""Workers: handlers by kind, bounded concurrency, heartbeats that stop cancelled jobs, retries, shutdown."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from contextiq.core.clock import utcnow
from contextiq.core.jobs import JobContext, JobHandler, JobQueue, JobRow, Worker
from contextiq.runtime import Runtime

WAIT = 10  # seconds: a bound on waiting for an event, never a sleep


class Recorder(JobHandler):
    """A handler whose jobs can be held open, made to fail, and observed."""

    def __init__(self, kind: str, *, hold: bool = False, fail_times: int = 0) -> None:
        self.kind = kind
        self.hold = hold
        self.fail_times = fail_times
        self.started: list[uuid.UUID] = []
        self.cancelled: list[uuid.UUID] = []
        self.failures: list[tuple[str, bool]] = []
        self.release = asyncio.Event()
        self.running = 0
        self.max_running = 0
        self.changed = asyncio.Event()

    async def run(self, ctx: JobContext) -> None:
        self.started.append(ctx.job_id)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.changed.set()
        try:
            if self.hold:
                await self.release.wait()
            if self.fail_times > 0:
                self.fail_times -= 1
                raise ValueError("scripted failure")
        except asyncio.CancelledError:
            self.cancelled.append(ctx.job_id)
            self.changed.set()
            raise
        finally:
            self.running -= 1

    async def on_failure(self, db: AsyncSession, job: JobRow, error: str, final: bool) -> None:
        self.failures.append((error, final))

    async def until(self, predicate: object) -> None:
        with anyio.fail_after(WAIT):
            while not predicate():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def queue(runtime: Runtime) -> JobQueue:
    return JobQueue(runtime.db)


@pytest.fixture
def kind() -> str:
    return f"test.{uuid.uuid4().hex[:10]}"


async def enqueue(rt: Runtime, queue: JobQueue, kind: str, n: int = 1, **extra: object) -> list[uuid.UUID]:
    async with rt.db.write() as db:
        ids = [(await queue.enqueue(db, kind=kind, **extra)).id for _ in range(n)]  # type: ignore[arg-type]
    queue.notify()
    return ids


async def status(queue: JobQueue, job_id: uuid.UUID) -> str:
    row = await queue.get(job_id=job_id)
    assert row is not None
    return row.status


async def test_run_until_idle_runs_every_job_of_its_kinds(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    handler = Recorder(kind)
    ids = await enqueue(runtime, queue, kind, 3)
    worker = Worker(queue=queue, handlers={kind: handler})
    assert await worker.run_until_idle() == 3
    assert handler.started == ids
    assert [await status(queue, i) for i in ids] == ["completed"] * 3


async def test_concurrency_is_bounded(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    handler = Recorder(kind, hold=True)
    ids = await enqueue(runtime, queue, kind, 5)
    worker = Worker(queue=queue, handlers={kind: handler}, concurrency=2, poll_interval=0.05)
    stop = asyncio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(stop=stop))
        await handler.until(lambda: handler.running == 2)
        handler.release.set()
        await handler.until(lambda: len(handler.started) == 5 and handler.running == 0)
        stop.set()
    assert handler.max_running == 2
    assert sorted(handler.started) == sorted(ids)


async def test_cancelled_job_is_stopped_by_the_heartbeat(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    handler = Recorder(kind, hold=True)
    (job_id,) = await enqueue(runtime, queue, kind)
    worker = Worker(queue=queue, handlers={kind: handler}, lease_seconds=0.3, poll_interval=0.05)
    lease = await worker.claim()
    assert lease is not None
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.execute, lease)
        await handler.until(lambda: handler.running == 1)
        async with runtime.db.write() as db:
            await queue.cancel(db, job_id=job_id)
        await handler.until(lambda: handler.cancelled == [job_id])
    assert await status(queue, job_id) == "cancelled"


async def test_failures_are_retried_then_recorded(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    handler = Recorder(kind, fail_times=5)
    (job_id,) = await enqueue(runtime, queue, kind, max_attempts=2)
    worker = Worker(queue=queue, handlers={kind: handler})
    lease = await worker.claim()
    assert lease is not None
    await worker.execute(lease)
    assert await status(queue, job_id) == "pending"
    later = utcnow() + timedelta(hours=1)  # past the retry's backoff
    retry = await queue.claim(owner="w", kinds=[kind], lease_seconds=30, job_id=job_id, now=later)
    assert retry is not None
    await worker.execute(retry)
    assert await status(queue, job_id) == "failed"
    assert handler.failures == [("ValueError: scripted failure", False), ("ValueError: scripted failure", True)]


async def test_shutdown_releases_running_jobs(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    handler = Recorder(kind, hold=True)
    (job_id,) = await enqueue(runtime, queue, kind)
    worker = Worker(queue=queue, handlers={kind: handler}, poll_interval=0.05)
    stop = asyncio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(stop=stop))
        await handler.until(lambda: handler.running == 1)
        stop.set()
    assert handler.cancelled == [job_id]
    row = await queue.get(job_id=job_id)
    assert row is not None and row.status == "pending" and row.attempts == 0 and row.lease_owner is None


async def test_handler_that_completes_in_its_transaction(runtime: Runtime, queue: JobQueue, kind: str) -> None:
    class Committer(JobHandler):
        def __init__(self) -> None:
            self.kind = kind

        async def run(self, ctx: JobContext) -> None:
            async with runtime.db.write() as db:
                await ctx.fence(db)
                await ctx.complete(db)

    (job_id,) = await enqueue(runtime, queue, kind)
    worker = Worker(queue=queue, handlers={kind: Committer()})
    assert await worker.run_job(job_id)
    assert await status(queue, job_id) == "completed"
    assert not await worker.run_job(job_id)  # a completed job is never claimed again


async def test_work_after_completing_in_the_transaction_is_not_cut_by_the_heartbeat(
    runtime: Runtime, queue: JobQueue, kind: str
) -> None:
    class CommitThenTidy(JobHandler):
        """Completes the job with its effects, then does post-commit work longer than a heartbeat."""

        def __init__(self) -> None:
            self.kind = kind
            self.tidied = False

        async def run(self, ctx: JobContext) -> None:
            async with runtime.db.write() as db:
                await ctx.fence(db)
                await ctx.complete(db)
            await asyncio.sleep(0.5)  # several heartbeats (lease 0.3 s: one every 0.1 s) go by
            self.tidied = True

    handler = CommitThenTidy()
    (job_id,) = await enqueue(runtime, queue, kind)
    worker = Worker(queue=queue, handlers={kind: handler}, lease_seconds=0.3, poll_interval=0.05)
    lease = await worker.claim()
    assert lease is not None
    with anyio.fail_after(WAIT):
        await worker.execute(lease)
    assert handler.tidied  # the heartbeat saw the completed job and stopped, without cancelling it
    assert await status(queue, job_id) == "completed"
