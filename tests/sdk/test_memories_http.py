"""AsyncClient's memory banks, memories and jobs through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contextiq.api import create_app
from contextiq.core.errors import Forbidden
from contextiq.core.llm.embeddings import EmbeddingProvider, make_embedding_provider
from contextiq.runtime import Runtime
from contextiq.sdk import AsyncClient
from contextiq.sdk.backends import http as http_backend
from tests.conftest import Tenant, make_settings, new_tenant
from tests.sdk import memory_scenarios as scenarios
from tests.sdk.memory_scenarios import SCOPE

BASE = "http://contextiq.test"


@pytest.fixture(scope="module")
def embedder() -> EmbeddingProvider:
    # One model for the module; the provider is loop-agnostic (it embeds on worker threads).
    return make_embedding_provider()


@pytest.fixture
async def runtime(database_url: str, tmp_path: Path, embedder: EmbeddingProvider) -> AsyncIterator[Runtime]:
    rt = Runtime(make_settings(tmp_path, database_url), embeddings=embedder)
    try:
        yield rt
    finally:
        await rt.aclose()


def _sdk(runtime: Runtime, tenant: Tenant, app: ASGIApp | None = None) -> AsyncClient:
    asgi = app or create_app(runtime=runtime)
    return AsyncClient(BASE, tenant.key, transport=httpx.ASGITransport(app=asgi))


@pytest.fixture
async def sdk(runtime: Runtime, tenant: Tenant) -> AsyncIterator[AsyncClient]:
    async with _sdk(runtime, tenant) as client:
        yield client


@pytest.fixture
async def theirs(runtime: Runtime) -> AsyncIterator[AsyncClient]:
    """A client of another tenant of the same server."""
    async with _sdk(runtime, await new_tenant(runtime)) as client:
        yield client


async def test_dark_mode_to_light_mode_keeps_one_memory_with_two_revisions(sdk: AsyncClient) -> None:
    await scenarios.dark_mode_to_light_mode(sdk)


async def test_retrieve_ranks_by_similarity_keyword_and_hybrid(sdk: AsyncClient) -> None:
    await scenarios.retrieve_in_every_mode(sdk)


async def test_list_and_iter_page_through_memories(sdk: AsyncClient) -> None:
    await scenarios.list_and_iter_page_through_memories(sdk)


async def test_memory_banks_create_read_update_delete(sdk: AsyncClient) -> None:
    await scenarios.memory_banks(sdk)


async def test_export_then_import_round_trips_through_rows_and_a_file(sdk: AsyncClient, tmp_path: Path) -> None:
    await scenarios.import_export_round_trip(sdk, tmp_path)


async def test_generate_from_facts_waits_for_the_finished_job(sdk: AsyncClient) -> None:
    await scenarios.generate_from_facts(sdk)


async def test_generate_from_a_session_with_the_offline_extractor(sdk: AsyncClient) -> None:
    await scenarios.generate_from_a_session(sdk)


async def test_pending_job_waits_with_a_timeout_and_cancels(sdk: AsyncClient) -> None:
    await scenarios.pending_jobs_wait_and_cancel(sdk)


async def test_errors_name_the_field_and_other_tenants_are_404(sdk: AsyncClient, theirs: AsyncClient) -> None:
    await scenarios.errors_are_mapped(sdk, theirs)


async def test_wait_polls_with_backoff_until_a_worker_has_run_the_job(
    sdk: AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await sdk.memories.generate(SCOPE, "facts", facts=["I have a cat named Miso."])
    assert job.status == "pending"
    pauses: list[float] = []

    async def work_instead_of_sleeping(seconds: float) -> None:
        # The SDK's pause between polls: on the third, a worker (as `contextiq worker` would) runs the job.
        pauses.append(seconds)
        if len(pauses) == 3:
            assert await runtime.build_worker().run_job(job.id)

    monkeypatch.setattr(http_backend, "_sleep", work_instead_of_sleeping)
    done = await sdk.jobs.wait(job.id, timeout=600)
    assert done.status == "completed"
    assert done.result is not None
    assert done.result.memories_created == 1
    initial = http_backend.POLL_INITIAL
    assert pauses == [initial, initial * 2, initial * 4]


async def test_lost_answer_to_a_create_is_retried_without_a_second_memory(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first create commits but its answer is lost (503): the retry replays it with the same key."""
    app = create_app(runtime=runtime)
    keys: list[str] = []

    async def lose_first_answer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            keys.append(dict(scope["headers"]).get(b"idempotency-key", b"").decode())
            if len(keys) == 1:

                async def discard(message: Message) -> None:
                    return None

                await app(scope, receive, discard)
                response = httpx.Response(503, json={"status": 503, "detail": "lost"})
                await send({"type": "http.response.start", "status": 503, "headers": response.headers.raw})
                await send({"type": "http.response.body", "body": response.content})
                return
        await app(scope, receive, send)

    async def no_pause(seconds: float) -> None:
        return None

    monkeypatch.setattr(http_backend, "_sleep", no_pause)
    async with _sdk(runtime, tenant, lose_first_answer) as client:
        memory = await client.memories.create("I like tea.", scope=SCOPE, topic="USER_PREFERENCES")
        job = await client.memories.generate(SCOPE, "facts", facts=["I like coffee."])
        assert [m.id for m in (await client.memories.list(scope=SCOPE)).items] == [memory.id]
        assert [j.id for j in (await client.jobs.list()).items] == [job.id]
    assert len(keys) == 3
    assert keys[0] and keys[0] == keys[1] != keys[2]


async def test_memory_calls_need_the_memories_scopes(sdk: AsyncClient, runtime: Runtime, tenant: Tenant) -> None:
    reader = await sdk.api_keys.create(name="sessions only", scopes=["sessions:read", "sessions:write"])
    async with _sdk(runtime, Tenant(id=tenant.id, key=reader.key)) as limited:
        with pytest.raises(Forbidden):
            await limited.memories.create("I like tea.", scope=SCOPE, topic="USER_PREFERENCES")
        with pytest.raises(Forbidden):
            await limited.memories.retrieve(SCOPE, "tea")
        with pytest.raises(Forbidden):
            await limited.jobs.get(uuid4())
        with pytest.raises(Forbidden):
            await limited.memory_banks.list()


async def test_export_streams_jsonl_lines_as_memories(sdk: AsyncClient) -> None:
    created = [
        await sdk.memories.create(f"I have read book number {i}.", scope=SCOPE, topic="USER_PERSONAL_INFO")
        for i in range(3)
    ]
    stream = sdk.memories.export(scope=SCOPE)
    first = await anext(stream)
    await stream.aclose()  # stopping early closes the streamed answer
    assert first.id == created[-1].id
    assert isinstance(first.id, UUID)
