"""The synchronous twins' memories and jobs: Client against a live uvicorn server, EmbeddedClient on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from contextiq.core.errors import Conflict, Invalid, NotFound
from contextiq.memories.generation.models import MemoryGenerationJob
from contextiq.memories.models import Memory, RetrieveResponse
from contextiq.sdk import ApiError, Client, EmbeddedClient
from tests.sdk.conftest import LiveServer, sqlite_settings

DARK = "I prefer dark mode interfaces."
LIGHT = "I prefer light mode interfaces."


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[Client]:
    with Client(live_server.base_url, live_server.admin_key) as sync:
        yield sync


@pytest.fixture
def scope() -> dict[str, str]:
    """A user of the live server's default organization that no other test touches."""
    return {"user_id": f"live-{uuid4().hex[:8]}"}


def test_dark_mode_to_light_mode_against_a_live_server(client: Client, scope: dict[str, str]) -> None:
    dark = client.memories.create(DARK, scope=scope, topic="USER_PREFERENCES")
    assert isinstance(dark, Memory)
    light = client.memories.update(dark.id, fact=LIGHT)
    assert (light.id, light.revision) == (dark.id, 2)
    revisions = client.memories.revisions(dark.id).items
    assert [(r.revision_number, r.fact) for r in revisions] == [(1, DARK), (2, LIGHT)]
    assert [r.action for r in client.memories.iter_revisions(dark.id, page_size=1)] == ["CREATED", "UPDATED"]
    before_change = revisions[0].valid_from
    assert [m.fact for m in client.memories.list(scope=scope, as_of=before_change).items] == [DARK]
    assert [m.fact for m in client.memories.iter(scope=scope)] == [LIGHT]
    for mode in ("similarity", "keyword", "hybrid"):
        found = client.memories.retrieve(scope, "light mode interfaces", mode=mode)
        assert isinstance(found, RetrieveResponse)
        assert [r.memory.id for r in found.memories] == [dark.id]
    then = client.memories.retrieve(scope, "Which UI theme does the user like?", as_of=before_change)
    assert [r.memory.fact for r in then.memories] == [DARK]
    assert client.memories.rollback(dark.id, 1).fact == DARK
    client.memories.delete(dark.id)
    with pytest.raises(NotFound):
        client.memories.get(dark.id)


def test_export_to_a_file_and_import_it_against_a_live_server(
    client: Client, scope: dict[str, str], tmp_path: Path
) -> None:
    for i in range(3):
        client.memories.create(f"I have visited country number {i}.", scope=scope, topic="USER_PERSONAL_INFO")
    path = tmp_path / "export.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for memory in client.memories.export(scope=scope):
            out.write(memory.model_dump_json() + "\n")
    bank = client.memory_banks.create(f"copy-{uuid4().hex[:8]}")
    assert client.memories.import_jsonl(path, bank_id=bank.id).imported == 3
    with path.open(encoding="utf-8") as lines:  # an open file is an iterable of JSONL lines
        assert client.memories.import_jsonl(lines, bank_id=bank.id).imported == 3
    # The rows may come from this client's own export, read in this thread while the import waits.
    assert client.memories.import_jsonl(client.memories.export(scope=scope), bank_id=bank.id).imported == 3
    copies = client.memories.list(bank_id=bank.id, scope=scope, limit=100).items
    assert len(copies) == 9
    assert sorted({m.fact for m in copies}) == [f"I have visited country number {i}." for i in range(3)]
    pager = client.memories.export(bank_id=bank.id)
    assert next(pager).bank_id == bank.id
    pager.close()  # closes the streamed answer on the client's loop
    with pytest.raises(Conflict):
        client.memory_banks.delete(bank.id)
    client.memory_banks.delete(bank.id, force=True)


def test_generate_and_jobs_against_a_live_server(client: Client, scope: dict[str, str]) -> None:
    job = client.memories.generate(
        scope, "events", wait_for_completion=True,
        events=[{"author": "user", "text": "I live in Lisbon."}, {"author": "agent", "text": "Lovely city!"}],
    )
    assert isinstance(job, MemoryGenerationJob)
    assert (job.status, job.extractor) == ("completed", "offline")
    assert [(e.author, e.status) for e in client.jobs.events(job.id).items] == [
        ("user", "extracted"), ("agent", "skipped"),
    ]
    assert [e.status for e in client.jobs.iter_events(job.id, status="extracted")] == ["extracted"]
    assert client.jobs.wait(job.id).status == "completed"
    assert [m.fact for m in client.memories.list(scope=scope).items] == ["I live in Lisbon."]

    pending = client.memories.generate(scope, "facts", facts=["I like tea."])
    assert client.jobs.wait(pending.id, timeout=0).status == "pending"  # the server runs no worker here
    assert client.jobs.cancel(pending.id).status == "cancelled"
    assert pending.id in [j.id for j in client.jobs.iter(status="cancelled")]
    assert job.id in [j.id for j in client.jobs.list(status="completed", limit=1000).items]


def test_errors_against_a_live_server(client: Client, scope: dict[str, str]) -> None:
    with pytest.raises(Invalid) as invalid:
        client.memories.retrieve({f"k{i}": "v" for i in range(6)}, "theme")
    assert isinstance(invalid.value, ApiError)
    assert (invalid.value.status, invalid.value.errors[0].field) == (422, "body.scope")
    with pytest.raises(NotFound) as missing:
        client.jobs.get(uuid4())
    assert isinstance(missing.value, ApiError)
    assert missing.value.kind == "job"
    with pytest.raises(Invalid) as bad_line:
        client.memories.import_jsonl(['{"scope": {"user_id": "u1"}, "fact": "x", "topic": "NOPE"}'])
    assert bad_line.value.errors[0].field == "line 1: topic"


def test_embedded_client_generates_and_waits_in_process(tmp_path: Path) -> None:
    scope = {"user_id": "u1"}
    with EmbeddedClient(sqlite_settings(tmp_path)) as embedded:
        session = embedded.sessions.create("u1")
        embedded.sessions.append_event(session.id, author="user", invocation_id="t1", text=DARK)
        embedded.sessions.append_event(
            session.id, author="user", invocation_id="t2", text="Actually, I now prefer light mode."
        )
        job = embedded.memories.generate(scope, "session", source_reference=session.id, wait_for_completion=True)
        assert job.status == "completed"
        assert [e.status for e in embedded.jobs.events(job.id).items] == ["extracted", "extracted"]
        (memory,) = embedded.memories.list(scope=scope).items
        assert (memory.revision, memory.source_session_id) == (2, session.id)

        pending = embedded.memories.generate(scope, "facts", facts=["I have a cat named Miso."])
        assert pending.status == "pending"
        done = embedded.jobs.wait(pending.id, timeout=600)  # no worker: the wait runs it
        assert done.status == "completed"
        assert [j.id for j in embedded.jobs.iter()] == [pending.id, job.id]
        assert {m.fact for m in embedded.memories.export(scope=scope)} == {memory.fact, "I have a cat named Miso."}
        then = embedded.memories.list(scope=scope, as_of=datetime(2000, 1, 1, tzinfo=UTC))
        assert then.items == []
        assert [b.name for b in embedded.memory_banks.list().items] == ["default"]
