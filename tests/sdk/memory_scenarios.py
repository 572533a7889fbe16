"""Memory stories every async client must tell alike; test_memories_http and _embedded run each one.

Each takes clients of fresh tenants, so the fixed scope `{"user_id": "u1"}` is the test's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import anyio
import pytest

from contextiq.core.errors import Conflict, Invalid, NotFound
from contextiq.memories.models import CustomMemoryTopic, Memory
from contextiq.sdk import ApiError
from contextiq.sdk.base import AsyncClientBase
from contextiq.sdk.resources import ImportRow
from contextiq.sessions.models import Author

Call = Callable[[], Awaitable[object]]
SCOPE = {"user_id": "u1"}
DARK = "I prefer dark mode interfaces."
LIGHT = "I prefer light mode interfaces."
CORPUS = [
    ("I prefer dark mode interfaces.", "USER_PREFERENCES", 1.0),
    ("My flight to Tokyo leaves on June 12th.", "KEY_CONVERSATION_DETAILS", 1.0),
    ("I am allergic to peanuts.", "USER_PERSONAL_INFO", 0.6),
    ("Always reply to me in Portuguese.", "EXPLICIT_INSTRUCTIONS", 1.0),
]
CONVERSATION: list[tuple[Author, str]] = [
    ("user", "I prefer dark mode interfaces."),
    ("agent", "Noted! Dark mode it is."),
    ("user", "Actually, I now prefer light mode."),
]


async def dark_mode_to_light_mode(client: AsyncClientBase) -> None:
    """One memory, two revisions; `as_of` before the change still reads the dark-mode fact."""
    dark = await client.memories.create(DARK, scope=SCOPE, topic="USER_PREFERENCES", confidence=0.95)
    assert isinstance(dark, Memory)
    assert (dark.revision, dark.revision_count, dark.source_type, dark.confidence) == (1, 0, "direct", 0.95)
    light = await client.memories.update(dark.id, fact=LIGHT)
    assert (light.id, light.fact, light.revision, light.revision_count) == (dark.id, LIGHT, 2, 1)
    assert (await client.memories.get(str(dark.id))).fact == LIGHT

    assert [m.fact for m in (await client.memories.list(scope=SCOPE)).items] == [LIGHT]
    revisions = (await client.memories.revisions(dark.id)).items
    assert [(r.revision_number, r.action, r.fact) for r in revisions] == [(1, "CREATED", DARK), (2, "UPDATED", LIGHT)]
    assert revisions[0].valid_to == revisions[1].valid_from

    # The instant the dark-mode revision took effect: before the change, with no clock to move.
    before_change = revisions[0].valid_from
    then = await client.memories.list(scope=SCOPE, as_of=before_change)
    assert [(m.id, m.fact, m.revision) for m in then.items] == [(dark.id, DARK, 1)]
    now = await client.memories.list(scope=SCOPE, as_of=datetime.now(UTC))
    assert [m.fact for m in now.items] == [LIGHT]
    assert (await client.memories.list(scope=SCOPE, as_of=datetime(2000, 1, 1, tzinfo=UTC))).items == []
    recalled = await client.memories.retrieve(SCOPE, "Which UI theme does the user like?", as_of=before_change)
    assert [r.memory.fact for r in recalled.memories] == [DARK]

    rolled = await client.memories.rollback(dark.id, 1)
    assert (rolled.fact, rolled.revision) == (DARK, 3)
    await client.memories.delete(dark.id)
    with pytest.raises(NotFound):
        await client.memories.get(dark.id)
    actions = [r.action async for r in client.memories.iter_revisions(dark.id, page_size=1)]
    assert actions == ["CREATED", "UPDATED", "UPDATED", "DELETED"]
    deleted = await client.memories.list(scope=SCOPE, include_deleted=True)
    assert [(m.id, m.is_deleted) for m in deleted.items] == [(dark.id, True)]
    await client.memories.delete(dark.id, hard=True)
    with pytest.raises(NotFound):
        await client.memories.revisions(dark.id)


async def retrieve_in_every_mode(client: AsyncClientBase) -> None:
    """Similarity, keyword and hybrid ranking, no query (newest first), and the filters."""
    for fact, topic, confidence in CORPUS:
        await client.memories.create(fact, scope=SCOPE, topic=topic, confidence=confidence)

    similar = await client.memories.retrieve(SCOPE, "Does the user have any food allergies?", mode="similarity")
    assert similar.memories[0].memory.fact == "I am allergic to peanuts."
    assert set(similar.memories[0].scores) == {"similarity"}
    keyword = await client.memories.retrieve(SCOPE, "Tokyo flight", mode="keyword")
    assert [r.memory.fact for r in keyword.memories] == ["My flight to Tokyo leaves on June 12th."]
    assert set(keyword.memories[0].scores) == {"keyword"}
    hybrid = await client.memories.retrieve(SCOPE, "What language should responses be written in?", top_k=2)
    assert [r.memory.fact for r in hybrid.memories][:1] == ["Always reply to me in Portuguese."]
    assert len(hybrid.memories) == 2
    assert set(hybrid.memories[0].scores) == {"similarity", "keyword", "session", "time"}

    newest = await client.memories.retrieve(SCOPE, top_k=2)
    assert [r.memory.fact for r in newest.memories] == [CORPUS[3][0], CORPUS[2][0]]
    preferences = await client.memories.retrieve(SCOPE, topics=["USER_PREFERENCES"])
    assert [r.memory.fact for r in preferences.memories] == [DARK]
    confident = await client.memories.retrieve(
        SCOPE, "Does the user have any food allergies?", mode="similarity", min_confidence=0.9
    )
    assert "I am allergic to peanuts." not in [r.memory.fact for r in confident.memories]
    assert (await client.memories.retrieve({"user_id": "someone-else"}, "allergies")).memories == []


async def list_and_iter_page_through_memories(client: AsyncClientBase) -> None:
    """Pages newest first, `iter` follows the cursor, filters narrow, scopes match exactly."""
    created = [
        await client.memories.create(f"I have visited {city}.", scope=SCOPE, topic="USER_PERSONAL_INFO")
        for city in ("Lisbon", "Porto", "Braga", "Faro", "Evora")
    ]
    await client.memories.create(DARK, scope=SCOPE, topic="USER_PREFERENCES")
    await client.memories.create(DARK, scope={**SCOPE, "agent_id": "travel"}, topic="USER_PREFERENCES")
    first = await client.memories.list(scope=SCOPE, topic="USER_PERSONAL_INFO", limit=2)
    assert len(first.items) == 2
    assert first.next_cursor is not None
    second = await client.memories.list(scope=SCOPE, topic="USER_PERSONAL_INFO", limit=2, cursor=first.next_cursor)
    assert {m.id for m in first.items}.isdisjoint({m.id for m in second.items})
    every = [m.id async for m in client.memories.iter(scope=SCOPE, topic="USER_PERSONAL_INFO", page_size=2)]
    assert every == [m.id for m in reversed(created)]
    assert len([m async for m in client.memories.iter(scope=SCOPE)]) == 6
    assert len([m async for m in client.memories.iter()]) == 7
    later = await client.memories.list(scope=SCOPE, created_after=created[-1].created_at)
    assert created[0].id not in {m.id for m in later.items}


async def memory_banks(client: AsyncClientBase) -> None:
    """Create, read, update and delete a bank; its topics, scope keys and TTLs apply to its memories."""
    name = f"travel-{uuid4().hex[:8]}"
    bank = await client.memory_banks.create(
        name,
        scope_keys=["user_id", "agent_id"],
        memory_topics=["USER_PREFERENCES", CustomMemoryTopic(label="TRIPS", description="Trips the user plans.")],
        ttl_config={"default_ttl": "365d", "create_ttl": "90d"},
    )
    assert bank.topic_labels() == ["USER_PREFERENCES", "TRIPS"]
    assert (bank.scope_keys, bank.ttl_config.create_ttl) == (["user_id", "agent_id"], "90d")
    assert (await client.memory_banks.get(str(bank.id))).name == name
    assert name in [b.name for b in (await client.memory_banks.list()).items]
    with pytest.raises(Conflict):
        await client.memory_banks.create(name)

    trip_scope = {**SCOPE, "agent_id": "travel"}
    trip = await client.memories.create(
        "I plan a trip to Japan in May.", scope=trip_scope, topic="TRIPS", bank_id=bank.id
    )
    assert trip.bank_id == bank.id
    assert trip.expires_at is not None  # the bank's create_ttl
    with pytest.raises(Invalid) as missing_key:
        await client.memories.create("I like trains.", scope=SCOPE, topic="TRIPS", bank_id=bank.id)
    assert missing_key.value.errors[0].field == "body.scope"
    with pytest.raises(Invalid) as unknown_topic:
        await client.memories.create("I like trains.", scope=trip_scope, topic="HOBBIES", bank_id=bank.id)
    assert unknown_topic.value.errors[0].field == "body.topic"

    renamed = await client.memory_banks.update(
        bank.id, name=f"{name}-v2", memory_topics=["USER_PREFERENCES", "USER_PERSONAL_INFO"], enable_revisions=False
    )
    assert (renamed.name, renamed.topic_labels()) == (f"{name}-v2", ["USER_PREFERENCES", "USER_PERSONAL_INFO"])
    assert renamed.enable_revisions is False
    assert renamed.scope_keys == ["user_id", "agent_id"]  # omitted: unchanged
    with pytest.raises(Conflict):
        await client.memory_banks.delete(bank.id)
    await client.memory_banks.delete(bank.id, force=True)
    with pytest.raises(NotFound) as gone:
        await client.memory_banks.get(bank.id)
    assert isinstance(gone.value, ApiError)
    assert gone.value.kind == "memory bank"
    with pytest.raises(NotFound):
        await client.memories.get(trip.id)


async def import_export_round_trip(client: AsyncClientBase, tmp_path: Path) -> None:
    """Export yields `Memory` objects; importing them (or their JSONL file) copies them into another bank."""
    said = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    for fact, topic, confidence in CORPUS[:3]:
        await client.memories.create(fact, scope=SCOPE, topic=topic, confidence=confidence, event_time=said)
    await client.memories.create("I am someone else.", scope={"user_id": "u2"}, topic="USER_PERSONAL_INFO")
    exported = [m async for m in client.memories.export(scope=SCOPE)]
    assert [m.fact for m in exported] == [fact for fact, _, _ in reversed(CORPUS[:3])]
    assert len([m async for m in client.memories.export()]) == 4  # the whole default bank

    archive = await client.memory_banks.create(f"archive-{uuid4().hex[:8]}")
    result = await client.memories.import_jsonl(exported, bank_id=archive.id)
    assert result.imported == 3
    copies = [m async for m in client.memories.export(bank_id=archive.id, scope=SCOPE)]
    assert sorted(m.fact for m in copies) == sorted(m.fact for m in exported)
    assert {m.id for m in copies} == set(result.ids)
    assert {m.id for m in copies}.isdisjoint({m.id for m in exported})
    assert {(m.source_type, m.event_time, m.bank_id) for m in copies} == {("imported", said, archive.id)}
    assert {m.confidence for m in copies} == {1.0, 0.6}

    path = tmp_path / "memories.jsonl"
    await anyio.Path(path).write_text("".join(m.model_dump_json() + "\n" for m in exported), encoding="utf-8")
    assert (await client.memories.import_jsonl(path, bank_id=archive.id)).imported == 3
    assert (await client.memories.import_jsonl(str(path), bank_id=str(archive.id))).imported == 3
    streamed = await client.memories.import_jsonl(client.memories.export(scope=SCOPE), bank_id=archive.id)
    assert streamed.imported == 3
    rows: list[ImportRow] = [
        {"scope": SCOPE, "fact": "I like tea.", "topic": "USER_PREFERENCES"},
        '{"scope": {"user_id": "u1"}, "fact": "", "topic": "USER_PREFERENCES"}',
    ]
    with pytest.raises(Invalid) as bad:
        await client.memories.import_jsonl(rows, bank_id=archive.id)
    assert [e.field for e in bad.value.errors] == ["line 2: fact"]
    assert len([m async for m in client.memories.export(bank_id=archive.id)]) == 12  # all or nothing


async def generate_from_facts(client: AsyncClientBase) -> None:
    """`wait_for_completion=True` returns the finished job; its events say what became of each fact."""
    key = f"generate-{uuid4()}"
    job = await client.memories.generate(
        SCOPE, "facts", facts=["I have a cat named Miso.", "I live in Lisbon."], wait_for_completion=True,
        idempotency_key=key,
    )
    assert (job.status, job.stage, job.progress, job.is_finished) == ("completed", "applied", 1.0, True)
    assert job.result is not None
    assert (job.result.memories_created, job.result.events_total) == (2, 2)
    memories = (await client.memories.list(scope=SCOPE)).items
    assert sorted(m.fact for m in memories) == ["I have a cat named Miso.", "I live in Lisbon."]
    assert {m.source_type for m in memories} == {"generated"}
    events = (await client.jobs.events(job.id)).items
    assert [(e.event_id, e.status) for e in events] == [("fact-1", "extracted"), ("fact-2", "extracted")]
    assert {i for e in events for i in e.memory_ids} == {m.id for m in memories}

    again = await client.memories.generate(
        SCOPE, "facts", facts=["I have a cat named Miso.", "I live in Lisbon."], wait_for_completion=True,
        idempotency_key=key,
    )
    assert again.id == job.id
    assert (await client.jobs.get(str(job.id))).status == "completed"
    assert [j.id async for j in client.jobs.iter(status="completed", page_size=1)] == [job.id]
    assert (await client.jobs.list(status="pending")).items == []


async def generate_from_a_session(client: AsyncClientBase) -> None:
    """The offline extractor reads a stored session in order: one memory, updated; the agent is skipped."""
    session = await client.sessions.create("u1")
    for author, text in CONVERSATION:
        await client.sessions.append_event(session.id, author=author, invocation_id="turn", text=text)
    job = await client.memories.generate(
        SCOPE, "session", source_reference=session.id, wait_for_completion=True, extraction_model="offline"
    )
    assert (job.status, job.extractor, job.source_reference) == ("completed", "offline", str(session.id))
    assert job.result is not None
    assert (job.result.memories_created, job.result.memories_updated) == (1, 1)

    (memory,) = (await client.memories.list(scope=SCOPE)).items
    assert "light mode" in memory.fact
    assert (memory.revision, memory.source_session_id) == (2, session.id)
    history = [r.fact for r in (await client.memories.revisions(memory.id)).items]
    assert "dark mode" in history[0]
    assert "light mode" in history[1]

    events = (await client.jobs.events(job.id)).items
    assert [(e.position, e.author, e.status) for e in events] == [
        (0, "user", "extracted"), (1, "agent", "skipped"), (2, "user", "extracted"),
    ]
    assert events[0].memory_ids == events[2].memory_ids == [memory.id]
    assert events[1].reason is not None
    skipped = await client.jobs.events(job.id, status="skipped")
    assert [e.position for e in skipped.items] == [1]
    assert [e.position async for e in client.jobs.iter_events(job.id, page_size=2)] == [0, 1, 2]


async def pending_jobs_wait_and_cancel(client: AsyncClientBase) -> None:
    """A job nobody ran is pending; `wait(timeout=0)` returns it as it is; cancelling is final and repeatable."""
    job = await client.memories.generate(SCOPE, "facts", facts=["I like green tea."])
    assert (job.status, job.is_finished, job.result) == ("pending", False, None)
    assert (await client.jobs.wait(job.id, timeout=0)).status == "pending"
    assert (await client.jobs.events(job.id)).items == []
    cancelled = await client.jobs.cancel(job.id)
    assert (cancelled.status, cancelled.is_finished) == ("cancelled", True)
    assert (await client.jobs.cancel(job.id)).status == "cancelled"
    assert (await client.jobs.wait(job.id)).status == "cancelled"  # finished: at once
    assert [j.id for j in (await client.jobs.list(status="cancelled")).items] == [job.id]
    with pytest.raises(ValueError, match="timeout"):
        await client.jobs.wait(job.id, timeout=-1)


async def errors_are_mapped(ours: AsyncClientBase, theirs: AsyncClientBase) -> None:
    """422 names the field (`body.scope`, `query.status`, `path.memory_id`); another tenant's objects are 404."""
    six = {f"k{i}": "v" for i in range(6)}
    calls: list[Call] = [
        lambda: ours.memories.create(DARK, scope=six, topic="USER_PREFERENCES"),
        lambda: ours.memories.retrieve(six, "theme"),
        lambda: ours.memories.generate(six, "facts", facts=["I like tea."]),
    ]
    for call in calls:
        with pytest.raises(Invalid) as invalid:
            await call()
        error = invalid.value
        assert isinstance(error, ApiError)
        assert (error.status, error.errors[0].field) == (422, "body.scope")
        assert "at most 5 keys" in error.errors[0].message
        assert error.problem["errors"][0]["field"] == "body.scope"
    with pytest.raises(Invalid) as bad_id:
        await ours.memories.get("not-a-uuid")
    assert bad_id.value.errors[0].field == "path.memory_id"
    with pytest.raises(Invalid) as bad_status:
        await ours.jobs.list(status="sleeping")  # type: ignore[arg-type]
    assert bad_status.value.errors[0].field == "query.status"
    with pytest.raises(Invalid) as bad_limit:
        await ours.memories.list(limit=5000)
    assert bad_limit.value.errors[0].field == "query.limit"

    memory = await theirs.memories.create(DARK, scope=SCOPE, topic="USER_PREFERENCES")
    bank = await theirs.memory_banks.create(f"private-{uuid4().hex[:8]}")
    job = await theirs.memories.generate(SCOPE, "facts", facts=["I like tea."])
    session = await theirs.sessions.create("u1")
    foreign: list[tuple[Call, str]] = [
        (lambda: ours.memories.get(memory.id), "memory"),
        (lambda: ours.memories.update(memory.id, fact=LIGHT), "memory"),
        (lambda: ours.memories.delete(memory.id), "memory"),
        (lambda: ours.memories.revisions(memory.id), "memory"),
        (lambda: ours.memories.rollback(memory.id, 1), "memory"),
        (lambda: ours.memory_banks.get(bank.id), "memory bank"),
        (lambda: ours.memory_banks.update(bank.id, name="mine"), "memory bank"),
        (lambda: ours.memory_banks.delete(bank.id, force=True), "memory bank"),
        (lambda: ours.memories.list(bank_id=bank.id), "memory bank"),
        (lambda: ours.memories.retrieve(SCOPE, "theme", bank_id=bank.id), "memory bank"),
        (lambda: ours.jobs.get(job.id), "job"),
        (lambda: ours.jobs.events(job.id), "job"),
        (lambda: ours.jobs.cancel(job.id), "job"),
        (lambda: ours.jobs.wait(job.id, timeout=0), "job"),
    ]
    for call, kind in foreign:
        with pytest.raises(NotFound) as missing:
            await call()
        assert isinstance(missing.value, ApiError)
        assert (missing.value.status, missing.value.kind) == (404, kind)
    with pytest.raises(NotFound):
        [m async for m in ours.memories.export(bank_id=bank.id)]
    with pytest.raises(Invalid) as foreign_session:
        await ours.memories.generate(SCOPE, "session", source_reference=session.id)
    assert foreign_session.value.errors[0].field == "body.source_reference"
    assert (await theirs.memories.get(memory.id)).fact == DARK  # untouched
    assert (await theirs.jobs.get(job.id)).status == "pending"
