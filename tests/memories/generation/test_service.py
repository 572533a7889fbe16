"""Generation in-process: idempotent re-runs, atomic apply, retries, failures, cancel of a running job."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import func, select, update

from contextiq.core.jobs import JobRow
from contextiq.core.llm.embeddings import EmbeddingProvider
from contextiq.memories.extraction.base import Extractor
from contextiq.memories.extraction.types import ExtractionResult, SourceEvent, Topic
from contextiq.memories.generation.models import GenerateRequest, MemoryGenerationJob
from contextiq.memories.tables import MemoryRevisionRow, MemoryRow
from contextiq.runtime import Runtime
from tests.conftest import Tenant, make_settings, new_tenant

WAIT = 30


def facts(*items: str, user: str = "u1", wait: bool = True, **config: Any) -> GenerateRequest:
    return GenerateRequest.model_validate(
        {"scope": {"user_id": user}, "source_type": "facts", "facts": list(items),
         "config": {"wait_for_completion": wait, **config}}
    )


def events(*items: tuple[str, str], user: str = "u1", wait: bool = True) -> GenerateRequest:
    return GenerateRequest.model_validate(
        {"scope": {"user_id": user}, "source_type": "events",
         "events": [{"author": a, "text": t} for a, t in items], "config": {"wait_for_completion": wait}}
    )


async def eventually(
    rt: Runtime, tenant: Tenant, job_id: uuid.UUID, check: Callable[[MemoryGenerationJob], bool]
) -> None:
    """Poll the job until `check` holds (a condition in the database, not a fixed sleep)."""
    with anyio.fail_after(WAIT):
        while True:
            if check(await rt.generation.get_job(tenant_id=tenant.id, job_id=job_id)):
                return
            await asyncio.sleep(0.02)


async def counts(rt: Runtime, tenant: Tenant) -> tuple[int, int]:
    """(live memories, revisions) of the tenant."""
    async with rt.db.read() as db:
        memories = await db.scalar(
            select(func.count()).select_from(MemoryRow)
            .where(MemoryRow.tenant_id == tenant.id, MemoryRow.is_deleted.is_(False))
        )
        revisions = await db.scalar(
            select(func.count()).select_from(MemoryRevisionRow).where(MemoryRevisionRow.tenant_id == tenant.id)
        )
    return int(memories or 0), int(revisions or 0)


async def test_generate_from_facts_then_skip_the_duplicate(runtime: Runtime, tenant: Tenant) -> None:
    first = await runtime.generation.generate(
        tenant_id=tenant.id, data=facts("I prefer dark mode interfaces.", "I drink green tea every morning.")
    )
    assert first.status == "completed" and first.stage == "applied" and first.progress == 1.0
    assert first.result is not None and first.result.memories_created == 2
    assert first.extractor == "offline" and first.usage.calls == 0
    assert first.started_at and first.completed_at and first.applied_at
    assert await counts(runtime, tenant) == (2, 2)
    again = await runtime.generation.generate(tenant_id=tenant.id, data=facts("I prefer dark mode interfaces."))
    assert again.result is not None
    assert (again.result.memories_created, again.result.memories_skipped) == (0, 1), again.result
    assert await counts(runtime, tenant) == (2, 2)


async def test_disable_consolidation_stores_every_fact(runtime: Runtime, tenant: Tenant) -> None:
    await runtime.generation.generate(tenant_id=tenant.id, data=facts("I prefer dark mode interfaces."))
    job = await runtime.generation.generate(
        tenant_id=tenant.id, data=facts("I prefer dark mode interfaces.", disable_consolidation=True)
    )
    assert job.result is not None and job.result.memories_created == 1
    assert job.result.actions[0].reason.startswith("consolidation disabled")
    assert await counts(runtime, tenant) == (2, 2)


async def test_rerunning_an_applied_job_changes_nothing(runtime: Runtime, tenant: Tenant) -> None:
    job = await runtime.generation.generate(
        tenant_id=tenant.id, data=facts("My name is Alice.", "I live in Berlin.")
    )
    before = await counts(runtime, tenant)
    # Simulate lost bookkeeping: the queue row claims the job never ran.
    async with runtime.db.write() as db:
        await db.execute(update(JobRow).where(JobRow.id == job.id).values(status="pending", finished_at=None))
    assert await runtime.build_worker().run_job(job.id)
    after = await runtime.generation.get_job(tenant_id=tenant.id, job_id=job.id)
    assert after.status == "completed" and after.attempts == 2
    assert after.applied_at == job.applied_at and after.result == job.result
    assert await counts(runtime, tenant) == before


async def test_idempotency_key_never_duplicates(runtime: Runtime, tenant: Tenant) -> None:
    data = facts("I am vegetarian.")
    first = await runtime.generation.generate(tenant_id=tenant.id, data=data, idempotency_key="k-1")
    second = await runtime.generation.generate(tenant_id=tenant.id, data=data, idempotency_key="k-1")
    assert first.id == second.id and second.status == "completed"
    assert await counts(runtime, tenant) == (1, 1)
    page = await runtime.generation.list_jobs(tenant_id=tenant.id)
    assert [j.id for j in page.items] == [first.id]


async def test_apply_is_one_transaction(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = runtime.memories.write_create
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> MemoryRow:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("disk on fire")
        return await original(*args, **kwargs)

    monkeypatch.setattr(runtime.memories, "write_create", flaky)
    job = await runtime.generation.generate(
        tenant_id=tenant.id, data=facts("My name is Alice.", "I live in Berlin.", wait=False)
    )
    assert await runtime.build_worker().run_job(job.id)
    failed = await runtime.generation.get_job(tenant_id=tenant.id, job_id=job.id)
    # The first memory was written in the same transaction as the second: both rolled back.
    assert await counts(runtime, tenant) == (0, 0)
    assert failed.status == "pending" and failed.attempts == 1 and failed.applied_at is None
    assert failed.error_message == "RuntimeError: disk on fire"


class Broken(Extractor):
    async def extract(
        self, *, events: Sequence[SourceEvent], topics: Sequence[Topic], examples: Sequence[Mapping[str, object]] = ()
    ) -> ExtractionResult:
        raise ConnectionError("model server unreachable")


async def test_last_failed_attempt_fails_the_job_and_its_events(
    database_url: str, tmp_path: Path, embedder: EmbeddingProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = Runtime(make_settings(tmp_path, database_url, worker_max_attempts=1), embeddings=embedder)
    try:
        tenant = await new_tenant(rt)
        steps = rt.generation._steps

        def broken(*args: Any) -> Any:
            _extractor, consolidator, name = steps(*args)
            return Broken(), consolidator, name

        monkeypatch.setattr(rt.generation, "_steps", broken)
        job = await rt.generation.generate(
            tenant_id=tenant.id, data=events(("user", "I prefer tea."), ("agent", "Noted."))
        )
        assert job.status == "failed" and job.attempts == 1 and job.max_attempts == 1
        assert job.error_message == "ConnectionError: model server unreachable"
        page = await rt.generation.list_job_events(tenant_id=tenant.id, job_id=job.id)
        assert [(e.event_id, e.status) for e in page.items] == [("event-1", "failed"), ("event-2", "failed")]
        assert page.items[0].reason == "the job failed: ConnectionError: model server unreachable"
    finally:
        await rt.aclose()


async def test_cancel_stops_a_running_job_before_it_applies(
    database_url: str, tmp_path: Path, embedder: EmbeddingProvider
) -> None:
    settings = make_settings(tmp_path, database_url, worker_lease_seconds=1.0, test_pause_after="extract")
    rt = Runtime(settings, embeddings=embedder)
    try:
        tenant = await new_tenant(rt)
        job = await rt.generation.generate(tenant_id=tenant.id, data=facts("I prefer tea.", wait=False))
        worker = rt.build_worker()
        lease = await worker.claim(job.id)
        assert lease is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.execute, lease)
            await eventually(rt, tenant, job.id, lambda j: j.stage == "extracted")  # paused after extraction
            cancelled = await rt.generation.cancel_job(tenant_id=tenant.id, job_id=job.id)
            assert cancelled.status == "cancelled"
        # execute() returned: the heartbeat saw the cancel and stopped the handler.
        final = await rt.generation.get_job(tenant_id=tenant.id, job_id=job.id)
        assert final.status == "cancelled" and final.applied_at is None
        assert await counts(rt, tenant) == (0, 0)
    finally:
        await rt.aclose()


async def test_in_process_worker_of_the_server_runs_jobs(
    database_url: str, tmp_path: Path, embedder: EmbeddingProvider
) -> None:
    rt = Runtime(make_settings(tmp_path, database_url, worker_poll_interval_seconds=0.05), embeddings=embedder)
    try:
        tenant = await new_tenant(rt)
        rt.start_background()
        job: MemoryGenerationJob = await rt.generation.generate(
            tenant_id=tenant.id, data=facts("I live in Lisbon.", wait=False, user=f"u-{uuid.uuid4().hex[:6]}")
        )
        await eventually(rt, tenant, job.id, lambda j: j.status == "completed")
    finally:
        await rt.aclose()


async def test_generate_over_http_with_wait_answers_200_with_the_result(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = {"scope": {"user_id": "u1"}, "source_type": "facts", "facts": ["I live in Berlin."],
            "config": {"wait_for_completion": True}}
    response = await client.post("/v1/memories:generate", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "completed" and job["result"]["memories_created"] == 1
    memory_id = job["result"]["actions"][0]["memory_id"]
    memory = (await client.get(f"/v1/memories/{memory_id}", headers=tenant.headers)).json()
    assert memory["source_type"] == "generated" and memory["metadata"]["job_id"] == job["id"]
    assert memory["metadata"]["source_event_ids"] == ["fact-1"]
    revisions = (await client.get(f"/v1/memories/{memory_id}/revisions", headers=tenant.headers)).json()["items"]
    assert revisions[0]["extracted_memories"] == ["I live in Berlin."]
    listed = (await client.get("/v1/memories", params={"scope": json.dumps({"user_id": "u1"})},
                               headers=tenant.headers)).json()["items"]
    assert [m["id"] for m in listed] == [memory_id]


SESSION = [
    ("user", "Hi there! How are you today?"),
    ("agent", "I'm doing well, thanks! How can I help?"),
    ("user", "My name is Alice and I live in Berlin."),
    ("agent", "Nice to meet you, Alice."),
    ("user", "I prefer dark mode interfaces."),
    ("agent", "Noted, dark mode it is."),
    ("user", "What's the weather like in Berlin?"),
    ("agent", "It's sunny and 21 degrees."),
    ("user", "I have a dog named Rex."),
    ("user", "Please always answer me in English."),
    ("agent", "Sure, I will answer in English."),
    ("user", "Actually, I now prefer light mode interfaces."),
    ("user", "Please forget that I have a dog named Rex."),
    ("user", "Oh, and forget that I'm allergic to peanuts."),
    ("user", "Thanks, bye!"),
]


async def test_offline_generation_from_a_realistic_session(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant
) -> None:
    # Remembered from an earlier conversation, retracted in this one.
    earlier = await runtime.generation.generate(tenant_id=tenant.id, data=facts("I'm allergic to peanuts."))
    assert earlier.result is not None and earlier.result.actions[0].memory_id is not None
    peanuts = str(earlier.result.actions[0].memory_id)

    session = (await client.post("/v1/sessions", json={"user_id": "u1"}, headers=tenant.headers)).json()
    event_ids = []
    for author, text in SESSION:
        created = await client.post(
            f"/v1/sessions/{session['id']}/events", headers=tenant.headers,
            json={"author": author, "invocation_id": "inv-1", "content": {"parts": [{"text": text}]}},
        )
        assert created.status_code == 201, created.text
        event_ids.append(created.json()["id"])
    body = {"scope": {"user_id": "u1"}, "source_type": "session", "source_reference": session["id"],
            "config": {"wait_for_completion": True}}
    response = await client.post("/v1/memories:generate", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "completed" and job["extractor"] == "offline"
    result = job["result"]
    assert {k: result[k] for k in ("memories_created", "memories_updated", "memories_deleted", "memories_skipped",
                                   "extracted_count", "events_total", "events_extracted", "events_skipped")} == {
        "memories_created": 4, "memories_updated": 1, "memories_deleted": 1, "memories_skipped": 2,
        "extracted_count": 8, "events_total": 15, "events_extracted": 7, "events_skipped": 8,
    }, result
    assert result["errors"] == []

    scope = json.dumps({"user_id": "u1"})
    memories = (await client.get("/v1/memories", params={"scope": scope}, headers=tenant.headers)).json()["items"]
    assert sorted(m["fact"] for m in memories) == [
        "Always answer me in English.", "I live in Berlin.", "I prefer light mode interfaces.", "My name is Alice.",
    ]
    assert all(m["source_session_id"] == session["id"] for m in memories)
    mode = next(m for m in memories if "mode" in m["fact"])
    assert mode["metadata"]["job_id"] == job["id"] and mode["metadata"]["subject"] == "preference:ui mode"
    assert mode["metadata"]["source_event_ids"] == [event_ids[11]]
    revisions = (await client.get(f"/v1/memories/{mode['id']}/revisions", headers=tenant.headers)).json()["items"]
    assert sorted((r["revision_number"], r["action"], r["fact"], r["extracted_memories"]) for r in revisions) == [
        (1, "CREATED", "I prefer dark mode interfaces.", ["I prefer dark mode interfaces."]),
        (2, "UPDATED", "I prefer light mode interfaces.", ["I now prefer light mode interfaces."]),
    ]
    gone = await client.get(f"/v1/memories/{peanuts}", headers=tenant.headers)
    assert gone.status_code == 404 or gone.json()["is_deleted"] is True

    page = (await client.get(f"/v1/jobs/{job['id']}/events", headers=tenant.headers)).json()
    events = page["items"]
    assert [e["event_id"] for e in events] == event_ids
    assert [e["status"] for e in events] == [
        "skipped", "skipped", "extracted", "skipped", "extracted", "skipped", "skipped", "skipped",
        "extracted", "extracted", "skipped", "extracted", "extracted", "extracted", "skipped",
    ]
    assert events[0]["reason"] == "no memorable statement"
    assert events[1]["reason"] == "not authored by the user"
    assert events[2]["candidate_count"] == 2 and len(events[2]["memory_ids"]) == 2
    assert events[4]["memory_ids"] == [mode["id"]] and "CREATE" in events[4]["reason"]
    assert events[11]["memory_ids"] == [mode["id"]] and "UPDATE" in events[11]["reason"]
    assert "never stored" in events[8]["reason"] and events[8]["memory_ids"] == []
    assert "nothing was stored" in events[12]["reason"]
    assert events[13]["memory_ids"] == [peanuts] and "DELETE" in events[13]["reason"]
    assert events[4]["excerpt"] == "I prefer dark mode interfaces."
    skipped = (await client.get(f"/v1/jobs/{job['id']}/events", params={"status": "skipped", "limit": 3},
                                headers=tenant.headers)).json()
    assert len(skipped["items"]) == 3 and skipped["next_cursor"] is not None

    # Re-running the same session adds nothing: every fact is already remembered.
    body["config"] = {"wait_for_completion": True}
    again = (await client.post("/v1/memories:generate", json=body, headers=tenant.headers)).json()
    assert again["result"]["memories_created"] == 0 and again["result"]["memories_updated"] == 0
    after = (await client.get("/v1/memories", params={"scope": scope}, headers=tenant.headers)).json()["items"]
    assert sorted(m["id"] for m in after) == sorted(m["id"] for m in memories)


async def test_wait_for_completion_answers_at_the_deadline_and_hands_the_job_back(
    database_url: str, tmp_path: Path, embedder: EmbeddingProvider
) -> None:
    settings = make_settings(tmp_path, database_url, generation_wait_seconds=0.5, test_pause_after="extract")
    rt = Runtime(settings, embeddings=embedder)
    try:
        tenant = await new_tenant(rt)
        job = await rt.generation.generate(tenant_id=tenant.id, data=facts("I prefer tea."))
        # The job stopped at the deadline (paused by the test hook) and went back to the queue.
        assert job.status == "pending" and job.applied_at is None
        async with rt.db.read() as db:
            queued = await db.get(JobRow, job.id)
        assert queued is not None and queued.status == "pending" and queued.attempts == 0
        assert await counts(rt, tenant) == (0, 0)
    finally:
        await rt.aclose()
