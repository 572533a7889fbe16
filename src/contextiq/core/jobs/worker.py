"""Workers: claim jobs, run their handlers with bounded concurrency, heartbeat, finish or retry.

One `Worker` runs in the server (in-process) and any number more run as `contextiq worker`
processes; they coordinate only through the jobs table. While a handler runs, a heartbeat task
extends its lease every third of the lease; when the heartbeat finds the job cancelled or taken
over, the handler is cancelled. A worker that dies simply stops heartbeating: its lease runs out
and another worker claims the job again.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from contextiq.core.jobs.queue import FailureHook, JobFailed, JobQueue, Lease, LeaseLost
from contextiq.core.jobs.tables import JobRow

log = logging.getLogger(__name__)

PAUSE_MARKER = "CONTEXTIQ-PAUSED"
REAP_EVERY_POLLS = 10


class JobHandler(abc.ABC):
    """Runs the jobs of one kind. Effects committed by `run` must be fenced (see `JobContext`)."""

    kind: str

    @abc.abstractmethod
    async def run(self, ctx: JobContext) -> None:
        """Do the job. Raise to fail this attempt (retried while attempts remain); JobFailed fails it for good."""

    async def on_failure(self, db: AsyncSession, job: JobRow, error: str, final: bool) -> None:
        """Record a failed attempt in the handler's own tables, in the queue's transaction."""
        return None

    async def on_release(self, db: AsyncSession, job: JobRow) -> None:
        """Record that a worker handed the job back unfinished (it is pending again), in the queue's transaction."""
        return None


class JobContext:
    """What a handler gets: the lease, the fence for its commits, and checkpoints."""

    def __init__(self, *, queue: JobQueue, lease: Lease, pause_after: str | None = None) -> None:
        self.queue = queue
        self.lease = lease
        self.completed = False
        self.lost = False
        self._pause_after = pause_after

    @property
    def job_id(self) -> UUID:
        return self.lease.job_id

    async def fence(self, db: AsyncSession) -> JobRow:
        """Lock the job in `db`'s transaction; raise LeaseLost unless this worker still holds it."""
        return await self.queue.fence(db, self.lease)

    async def complete(self, db: AsyncSession) -> None:
        """Mark the job completed in `db`'s transaction, atomically with the effects committed there."""
        await self.queue.complete(db, self.lease)
        self.completed = True

    async def checkpoint(self, step: str) -> None:
        """Mark the end of a step; with the test hook `pause_after == step`, block here for good.

        The crash tests start a worker with `CONTEXTIQ_TEST_PAUSE_AFTER=<step>`, wait for the
        marker line, and SIGKILL it at exactly this point while its heartbeat keeps the lease.
        """
        if self._pause_after != step:
            return
        print(f"{PAUSE_MARKER} {step} {self.lease.job_id}", file=sys.stdout, flush=True)
        log.warning("job %s paused after %s (test hook CONTEXTIQ_TEST_PAUSE_AFTER)", self.lease.job_id, step)
        await asyncio.Event().wait()


def default_worker_name() -> str:
    """Return `host:pid`, the prefix of this process's lease owners."""
    return f"{socket.gethostname()[:200]}:{os.getpid()}"


class Worker:
    """Runs jobs of the registered kinds, at most `concurrency` at a time."""

    def __init__(
        self,
        *,
        queue: JobQueue,
        handlers: Mapping[str, JobHandler],
        concurrency: int = 2,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        name: str | None = None,
        pause_after: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if lease_seconds <= 0 or poll_interval <= 0:
            raise ValueError("lease_seconds and poll_interval must be positive")
        self.queue = queue
        self.handlers = dict(handlers)
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.name = name or default_worker_name()
        self.pause_after = pause_after
        self._active: set[asyncio.Task[None]] = set()

    @property
    def kinds(self) -> list[str]:
        return sorted(self.handlers)

    def _failure_hooks(self) -> dict[str, FailureHook]:
        return {kind: handler.on_failure for kind, handler in self.handlers.items()}

    # -- one job --------------------------------------------------------------------------------

    async def claim(self, job_id: UUID | None = None) -> Lease | None:
        """Lease the next job of this worker's kinds (or exactly `job_id`), or return None."""
        return await self.queue.claim(
            owner=self.name, kinds=self.kinds, lease_seconds=self.lease_seconds, job_id=job_id
        )

    async def run_job(self, job_id: UUID) -> bool:
        """Claim `job_id` now and run it in this task; False when it is not claimable (already taken)."""
        lease = await self.claim(job_id)
        if lease is None:
            return False
        await self.execute(lease)
        return True

    async def run_until_idle(self, *, limit: int = 1000) -> int:
        """Run claimable jobs one after another until none is left; return how many ran (tests, CLI)."""
        ran = 0
        while ran < limit:
            lease = await self.claim()
            if lease is None:
                break
            await self.execute(lease)
            ran += 1
        return ran

    async def execute(self, lease: Lease) -> None:
        """Run one leased job with its heartbeat; finish, retry or fail it by the outcome."""
        handler = self.handlers[lease.kind]
        ctx = JobContext(queue=self.queue, lease=lease, pause_after=self.pause_after)
        runner = asyncio.create_task(handler.run(ctx), name=f"job-{lease.job_id}")
        beat = asyncio.create_task(self._heartbeat(ctx, runner), name=f"heartbeat-{lease.job_id}")
        try:
            await runner
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # This worker is shutting down: hand the job back for another worker, then stop.
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
                await self._release(lease, handler)
                raise
            log.info("job %s stopped: cancelled or taken over by another worker", lease.job_id)
        except LeaseLost as exc:
            log.info("job %s: %s", lease.job_id, exc)
        except JobFailed as exc:
            log.warning("job %s (%s) failed for good: %s", lease.job_id, lease.kind, exc)
            await self._record(lease, error=str(exc), handler=handler, permanent=True)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("job %s (%s) attempt %d failed: %s", lease.job_id, lease.kind, lease.attempt, error,
                        exc_info=True)
            await self._record(lease, error=error, handler=handler, permanent=False)
        else:
            if not ctx.completed:
                try:
                    if not await self.queue.finish(lease):
                        log.info("job %s finished after its lease was lost; not marked completed", lease.job_id)
                except Exception:  # the lease runs out and the job is run again (handlers are idempotent)
                    log.exception("could not mark job %s completed", lease.job_id)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)

    async def _record(self, lease: Lease, *, error: str, handler: JobHandler, permanent: bool) -> None:
        try:
            status = await self.queue.fail(lease, error=error, on_failure=handler.on_failure, permanent=permanent)
        except Exception:  # the lease runs out and the job is retried anyway
            log.exception("could not record the failure of job %s", lease.job_id)
            return
        log.info("job %s is now %s", lease.job_id, status)

    async def _release(self, lease: Lease, handler: JobHandler) -> None:
        try:
            await self.queue.release(lease, on_release=handler.on_release)
        except Exception:  # the lease will run out and the job be claimed again anyway
            log.exception("could not release job %s", lease.job_id)

    async def _heartbeat(self, ctx: JobContext, runner: asyncio.Task[None]) -> None:
        interval = ctx.lease.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                alive = await self.queue.heartbeat(ctx.lease)
            except Exception:  # a missed beat is retried; the lease is three beats long
                log.exception("heartbeat of job %s failed", ctx.lease.job_id)
                continue
            if not alive:
                # A job that completed itself in its apply transaction has no lease left to keep:
                # that is not a takeover, and what the handler does after its commit must still run.
                if not ctx.completed:
                    ctx.lost = True
                    runner.cancel()
                return

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, *, stop: asyncio.Event | None = None) -> None:
        """Claim and run jobs until `stop` is set or this task is cancelled; running jobs are released."""
        stop = stop or asyncio.Event()
        stopper = asyncio.create_task(stop.wait())
        polls = 0
        log.info("worker %s running kinds %s (concurrency %d, lease %.0fs)", self.name, self.kinds,
                 self.concurrency, self.lease_seconds)
        try:
            while not stop.is_set():
                if polls % REAP_EVERY_POLLS == 0:
                    await self._reap()
                polls += 1
                await self._fill()
                waiter = asyncio.create_task(self.queue.wait_for_work(self.poll_interval))
                waits: set[asyncio.Task[Any]] = {waiter, stopper}
                if len(self._active) >= self.concurrency:
                    waits |= self._active  # full: wake when a slot frees
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if not waiter.done():
                    waiter.cancel()
        finally:
            stopper.cancel()
            await self._drain()

    async def _fill(self) -> None:
        while len(self._active) < self.concurrency:
            try:
                lease = await self.claim()
            except Exception:  # the database may be down for a moment; poll again later
                log.exception("worker %s could not claim a job", self.name)
                return
            if lease is None:
                return
            task = asyncio.create_task(self.execute(lease), name=f"execute-{lease.job_id}")
            self._active.add(task)
            task.add_done_callback(self._active.discard)

    async def _reap(self) -> None:
        try:
            await self.queue.reap(on_failure=self._failure_hooks())
        except Exception:
            log.exception("worker %s could not reap expired jobs", self.name)

    async def _drain(self) -> None:
        tasks = list(self._active)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
