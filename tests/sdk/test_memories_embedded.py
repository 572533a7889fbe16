"""AsyncEmbeddedClient's memory banks, memories and jobs in-process, on SQLite and PostgreSQL, as over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import anyio
import httpx
import pytest

from contextiq.api import create_app
from contextiq.core.clock import utcnow
from contextiq.core.config import Settings
from contextiq.core.errors import Invalid, NotFound
from contextiq.core.types import JSON
from contextiq.memories import service as memory_service
from contextiq.runtime import Runtime
from contextiq.sdk import ApiError, AsyncClient, AsyncEmbeddedClient
from contextiq.sdk.base import AsyncClientBase
from contextiq.sessions import service as session_service
from tests.conftest import Tenant, make_settings, new_tenant
from tests.sdk import memory_scenarios as scenarios
from tests.sdk.memory_scenarios import SCOPE


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
async def embedded(settings: Settings, tenant: Tenant) -> AsyncIterator[AsyncEmbeddedClient]:
    async with AsyncEmbeddedClient(settings, tenant_id=tenant.id) as client:
        yield client


@pytest.fixture
async def theirs(settings: Settings, runtime: Runtime) -> AsyncIterator[AsyncEmbeddedClient]:
    """A client of another tenant of the same database."""
    async with AsyncEmbeddedClient(settings, api_key=(await new_tenant(runtime)).key) as client:
        yield client


async def test_dark_mode_to_light_mode_keeps_one_memory_with_two_revisions(embedded: AsyncEmbeddedClient) -> None:
    await scenarios.dark_mode_to_light_mode(embedded)


async def test_retrieve_ranks_by_similarity_keyword_and_hybrid(embedded: AsyncEmbeddedClient) -> None:
    await scenarios.retrieve_in_every_mode(embedded)


async def test_list_and_iter_page_through_memories(embedded: AsyncEmbeddedClient) -> None:
    await scenarios.list_and_iter_page_through_memories(embedded)


async def test_memory_banks_create_read_update_delete(embedded: AsyncEmbeddedClient) -> None:
    await scenarios.memory_banks(embedded)


async def test_export_then_import_round_trips_through_rows_and_a_file(
    embedded: AsyncEmbeddedClient, tmp_path: Path
) -> None:
    await scenarios.import_export_round_trip(embedded, tmp_path)


async def test_generate_from_facts_runs_the_job_in_process(embedded: AsyncEmbeddedClient) -> None:
    await scenarios.generate_from_facts(embedded)


async def test_generate_from_a_session_with_the_offline_extractor(embedded: AsyncEmbeddedClient) -> None:
    await scenarios.generate_from_a_session(embedded)


async def test_pending_job_waits_with_a_timeout_and_cancels(embedded: AsyncEmbeddedClient) -> None:
    await scenarios.pending_jobs_wait_and_cancel(embedded)


async def test_errors_name_the_field_and_other_tenants_are_404(
    embedded: AsyncEmbeddedClient, theirs: AsyncEmbeddedClient
) -> None:
    await scenarios.errors_are_mapped(embedded, theirs)


async def test_wait_runs_a_pending_job_in_process_without_a_worker(embedded: AsyncEmbeddedClient) -> None:
    job = await embedded.memories.generate(
        SCOPE, "events", events=[{"author": "user", "text": "I live in Lisbon."}, {"author": "agent", "text": "Nice!"}]
    )
    assert job.status == "pending"
    done = await embedded.jobs.wait(job.id, timeout=600)
    assert (done.status, done.extractor) == ("completed", "offline")
    events = (await embedded.jobs.events(done.id)).items
    assert [(e.event_id, e.status) for e in events] == [("event-1", "extracted"), ("event-2", "skipped")]
    assert [m.fact for m in (await embedded.memories.list(scope=SCOPE)).items] == ["I live in Lisbon."]


async def test_background_worker_finishes_a_job_nobody_waits_for(settings: Settings, tenant: Tenant) -> None:
    async with AsyncEmbeddedClient(settings, tenant_id=tenant.id, background=True) as client:
        job = await client.memories.generate(SCOPE, "facts", facts=["I have a cat named Miso."])
        with anyio.fail_after(60):
            while not job.is_finished:  # polls the database: each read lets the worker's task run
                job = await client.jobs.get(job.id)
        assert job.status == "completed"


async def test_opening_sweeps_expired_memories_and_sessions(
    settings: Settings, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with AsyncEmbeddedClient(settings, tenant_id=tenant.id) as client:
        soon = utcnow() + timedelta(hours=1)
        memory = await client.memories.create("I am on holiday.", scope=SCOPE, topic="USER_PERSONAL_INFO", ttl="1h")
        session = await client.sessions.create("u1", expires_at=soon)

    def later() -> datetime:
        return utcnow() + timedelta(hours=2)

    # Two hours on, for the services: the next client's first sweep finds both expired.
    monkeypatch.setattr(memory_service, "utcnow", later)
    monkeypatch.setattr(session_service, "utcnow", later)
    async with AsyncEmbeddedClient(settings, tenant_id=tenant.id) as client:
        revisions = (await client.memories.revisions(memory.id)).items
        assert [(r.action, r.metadata) for r in revisions] == [("CREATED", {}), ("DELETED", {"reason": "ttl"})]
        assert (await client.sessions.get(session.id)).is_active is False


async def _problems(client: AsyncClientBase, absent: UUID) -> list[JSON]:
    """Return the problem bodies of a series of bad calls."""
    six = {f"k{i}": "v" for i in range(6)}
    invalid_calls: list[Callable[[], Awaitable[object]]] = [
        lambda: client.memories.create("x", scope=six, topic="USER_PREFERENCES"),
        lambda: client.memories.create("", scope=SCOPE, topic="NOT_A_TOPIC"),
        lambda: client.memories.retrieve(SCOPE, "x", top_k=500),
        lambda: client.memories.generate(SCOPE, "session", source_reference="nope"),
        lambda: client.memories.import_jsonl(['{"scope": {"user_id": "u1"}, "fact": "x"}', "not json"]),
        lambda: client.memories.list(scope=six),
        lambda: client.jobs.list(status="sleeping"),  # type: ignore[arg-type]
        lambda: client.jobs.events(absent, limit=0),
        lambda: client.memories.rollback(absent, 0),
        lambda: client.memory_banks.create("b", ttl_config={"default_ttl": "5 days"}),
    ]
    missing_calls: list[Callable[[], Awaitable[object]]] = [
        lambda: client.memories.get(absent),
        lambda: client.memory_banks.get(absent),
        lambda: client.jobs.get(absent),
    ]
    problems: list[JSON] = []
    for call in invalid_calls:
        with pytest.raises(Invalid) as invalid:
            await call()
        assert isinstance(invalid.value, ApiError)
        problems.append(invalid.value.problem)
    for call in missing_calls:
        with pytest.raises(NotFound) as not_found:
            await call()
        assert isinstance(not_found.value, ApiError)
        problems.append(not_found.value.problem)
    return problems


async def test_errors_match_the_http_api(settings: Settings, runtime: Runtime, tenant: Tenant) -> None:
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    absent = uuid4()
    async with AsyncEmbeddedClient(settings, tenant_id=tenant.id) as embedded, AsyncClient(
        "http://contextiq.test", tenant.key, transport=transport
    ) as remote:
        assert await _problems(embedded, absent) == await _problems(remote, absent)
