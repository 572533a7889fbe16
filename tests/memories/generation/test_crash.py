"""Crash safety with real worker processes: SIGKILL mid-job, mid-apply and after the commit.

Each test starts `python -m contextiq.core.jobs` with the test hook CONTEXTIQ_TEST_PAUSE_AFTER=<step>:
the worker blocks right after that step (still heartbeating) and prints a marker line, so the test
kills it at exactly that point. A second worker, with the same short lease, takes the job over once
the dead worker's lease runs out and finishes it. The memories must exist exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import func, select

import contextiq
from contextiq.core.db import migrate
from contextiq.core.jobs import PAUSE_MARKER, JobRow
from contextiq.core.llm.embeddings import EmbeddingProvider
from contextiq.core.scope import scope_key
from contextiq.memories.generation.models import GenerateRequest, MemoryGenerationJob
from contextiq.memories.generation.tables import GenerationEventRow
from contextiq.memories.tables import MemoryRevisionRow, MemoryRow
from contextiq.runtime import Runtime
from contextiq.sessions.models import EventCreate, SessionCreate
from tests.conftest import Tenant, empty_postgres, make_settings, new_tenant

LEASE_SECONDS = 2
WAIT = 90  # seconds: the bound on waiting for a marker or a state, never a sleep
SRC = str(Path(contextiq.__file__).resolve().parents[1])

CONVERSATION = [
    ("user", "Hi! I prefer dark mode interfaces."),
    ("agent", "Noted, dark mode it is."),
    ("user", "My name is Alice and I live in Berlin."),
    ("agent", "Nice to meet you, Alice."),
    ("user", "Actually, I now prefer light mode interfaces."),
    ("user", "Thanks, that's all for now!"),
]


@pytest.fixture(
    params=[pytest.param("sqlite", marks=pytest.mark.sqlite), pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own: a worker process claims every due job, so no other test's may be there."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}"
        migrate.upgrade(url)
        yield url
        return
    with empty_postgres("ciq_crash") as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture
async def rt(fresh_url: str, tmp_path: Path, embedder: EmbeddingProvider) -> AsyncIterator[Runtime]:
    runtime = Runtime(make_settings(tmp_path, fresh_url), embeddings=embedder)
    try:
        yield runtime
    finally:
        await runtime.aclose()


class WorkerProcess:
    """A `python -m contextiq.core.jobs` process; its stdout carries the pause marker."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    @classmethod
    async def start(cls, url: str, tmp_path: Path, *, pause_after: str | None = None) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTEXTIQ_")}
        env.update(
            PYTHONPATH=os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])]),
            CONTEXTIQ_ENV="test",
            CONTEXTIQ_DATABASE_URL=url,
            CONTEXTIQ_DATA_DIR=str(tmp_path),
            CONTEXTIQ_AUTO_MIGRATE="false",
            CONTEXTIQ_WORKER_LEASE_SECONDS=str(LEASE_SECONDS),
            CONTEXTIQ_WORKER_POLL_INTERVAL_SECONDS="0.1",
            CONTEXTIQ_WORKER_CONCURRENCY="1",
            CONTEXTIQ_LOG_LEVEL="info",
        )
        if pause_after:
            env["CONTEXTIQ_TEST_PAUSE_AFTER"] = pause_after
        log = tmp_path / f"worker-{uuid.uuid4().hex[:6]}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "contextiq.worker", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=err,
            )
        return cls(proc, log)

    async def paused(self) -> tuple[str, uuid.UUID]:
        """Wait for the pause marker; return the step and the job id."""
        assert self.proc.stdout is not None
        with anyio.fail_after(WAIT):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"worker exited before pausing:\n{self.log.read_text()}")
                if line.startswith(PAUSE_MARKER):
                    _marker, step, job_id = line.split()
                    return step, uuid.UUID(job_id)

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(WAIT):
                await self.proc.wait()
        assert self.proc.returncode == 0, self.log.read_text()


async def wait_until(check: Callable[[], Any], what: str) -> None:
    """Poll the database until `check()` is true (a condition, not a fixed sleep)."""
    with anyio.fail_after(WAIT):
        while True:
            if await check():
                return
            await anyio.sleep(0.1)


async def start_job(rt: Runtime, tenant: Tenant, user: str) -> MemoryGenerationJob:
    session = await rt.sessions.create_session(tenant_id=tenant.id, data=SessionCreate(user_id=user))
    for author, text in CONVERSATION:
        await rt.sessions.append_event(
            tenant_id=tenant.id, session_id=session.id,
            data=EventCreate(author=author, invocation_id="inv", content={"parts": [{"text": text}]}),
        )
    request = GenerateRequest(scope={"user_id": user}, source_type="session", source_reference=str(session.id))
    return await rt.generation.generate(tenant_id=tenant.id, data=request)


async def state(rt: Runtime, tenant: Tenant, job_id: uuid.UUID, user: str) -> dict[str, Any]:
    """The job, its queue row, and the memories, revisions and per-event rows it produced."""
    job = await rt.generation.get_job(tenant_id=tenant.id, job_id=job_id)
    async with rt.db.read() as db:
        queue_row = await db.get(JobRow, job_id)
        in_scope = (MemoryRow.tenant_id == tenant.id, MemoryRow.scope_key == scope_key({"user_id": user}))
        memories = (await db.scalars(select(MemoryRow).where(*in_scope))).all()
        revisions = await db.scalar(
            select(func.count())
            .select_from(MemoryRevisionRow)
            .join(MemoryRow, MemoryRow.id == MemoryRevisionRow.memory_id)
            .where(*in_scope)
        )
        events = await db.scalar(
            select(func.count()).select_from(GenerationEventRow).where(GenerationEventRow.job_id == job_id)
        )
    assert queue_row is not None
    return {
        "job": job, "queue": queue_row, "facts": sorted(m.fact for m in memories),
        "jobs_of_memories": {m.metadata_.get("job_id") for m in memories}, "revisions": revisions,
        "events": events,
    }


async def completed(rt: Runtime, tenant: Tenant, job_id: uuid.UUID) -> bool:
    return (await rt.generation.get_job(tenant_id=tenant.id, job_id=job_id)).status == "completed"


pytestmark = pytest.mark.slow


@pytest.mark.parametrize("step", ["extract", "apply"])
async def test_worker_killed_mid_job_is_finished_by_another_without_duplicates(
    rt: Runtime, fresh_url: str, tmp_path: Path, step: str
) -> None:
    tenant = await new_tenant(rt)
    job = await start_job(rt, tenant, "u-crash")
    first = await WorkerProcess.start(fresh_url, tmp_path, pause_after=step)
    second: WorkerProcess | None = None
    try:
        assert await first.paused() == (step, job.id)
        if step != "apply":  # "apply" pauses inside the uncommitted transaction, holding its locks
            before = await state(rt, tenant, job.id, "u-crash")
            # The marker in the database: the job runs under the first worker's lease.
            assert before["queue"].status == "running" and before["queue"].attempts == 1
            assert before["job"].status == "processing"
            assert before["job"].stage == {"extract": "extracted", "consolidate": "consolidated"}[step]
        # The second worker starts while the first still holds the lease, so it must wait for it.
        second = await WorkerProcess.start(fresh_url, tmp_path)
        await first.kill()
        await wait_until(lambda: completed(rt, tenant, job.id), "the second worker finishes the job")
    finally:
        if first.proc.returncode is None:
            first.proc.kill()
            await first.proc.wait()
        if second is not None:
            await second.stop()
    done = await state(rt, tenant, job.id, "u-crash")
    # Attempt 1 died with the first worker; its uncommitted apply left nothing behind.
    assert done["queue"].status == "completed" and done["queue"].attempts == 2
    assert done["job"].applied_at is not None and done["job"].result is not None
    # Every memory exactly once, with exactly its revisions: dark mode then light mode, name, city.
    assert done["facts"] == ["I live in Berlin.", "I prefer light mode interfaces.", "My name is Alice."]
    assert done["revisions"] == 4
    assert done["jobs_of_memories"] == {str(job.id)}
    assert done["events"] == len(CONVERSATION)
    result = done["job"].result
    assert (result.memories_created, result.memories_updated) == (3, 1)


async def test_worker_killed_after_commit_never_reapplies(rt: Runtime, fresh_url: str, tmp_path: Path) -> None:
    tenant = await new_tenant(rt)
    job = await start_job(rt, tenant, "u-commit")
    first = await WorkerProcess.start(fresh_url, tmp_path, pause_after="commit")
    try:
        assert await first.paused() == ("commit", job.id)
        await first.kill()
    finally:
        if first.proc.returncode is None:
            first.proc.kill()
            await first.proc.wait()
    # The apply transaction also completed the job: there is no window between the two.
    after_kill = await state(rt, tenant, job.id, "u-commit")
    assert after_kill["queue"].status == "completed" and after_kill["job"].status == "completed"
    assert after_kill["facts"]

    # A second worker runs a later job (proof that it polled the queue) and never touches the first.
    sentinel = await start_job(rt, tenant, "u-sentinel")
    second = await WorkerProcess.start(fresh_url, tmp_path)
    try:
        await wait_until(lambda: completed(rt, tenant, sentinel.id), "the second worker runs the sentinel")
    finally:
        await second.stop()
    final = await state(rt, tenant, job.id, "u-commit")
    assert final["facts"] == after_kill["facts"] and final["revisions"] == after_kill["revisions"]
    assert final["queue"].attempts == 1 and final["job"].applied_at == after_kill["job"].applied_at
