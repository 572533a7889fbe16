"""The memory service: revisions under concurrency, TTLs, retrieval quality, primitives, caches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import numpy as np
import pytest
from sqlalchemy import text, update

import contextiq.memories.service as memory_service
import contextiq.memories.store as memory_store
from contextiq.core.clock import utcnow
from contextiq.core.errors import Invalid, NotFound
from contextiq.core.llm.embeddings import EmbeddingProvider, make_embedding_provider
from contextiq.core.scope import scope_key
from contextiq.memories.models import (
    MemoryBankCreate,
    MemoryCreate,
    MemoryFilter,
    MemoryUpdate,
    RetrieveFilters,
    RetrieveRequest,
    TTLConfig,
)
from contextiq.memories.service import MemoryService
from contextiq.memories.store import MEMORY_TEXT
from contextiq.memories.tables import MemoryRow
from contextiq.runtime import Runtime
from tests.conftest import Tenant, make_settings, new_tenant

USER = {"user_id": "u1"}

# A small, realistic set: one user's memories across the four managed topics.
FACTS = [
    ("I prefer dark mode interfaces.", "USER_PREFERENCES"),
    ("I am allergic to peanuts.", "USER_PERSONAL_INFO"),
    ("My daughter Emma turns seven on March 3rd.", "USER_PERSONAL_INFO"),
    ("I work as a nurse at Lisbon General Hospital.", "USER_PERSONAL_INFO"),
    ("Always reply to me in Portuguese.", "EXPLICIT_INSTRUCTIONS"),
    ("I am training for the Berlin marathon in September.", "KEY_CONVERSATION_DETAILS"),
    ("I drink my coffee black with no sugar.", "USER_PREFERENCES"),
    ("My favourite band is Radiohead.", "USER_PREFERENCES"),
    ("I drive a 2019 Toyota Prius.", "USER_PERSONAL_INFO"),
    ("I am vegetarian and do not eat fish.", "USER_PREFERENCES"),
    ("My manager at work is called Priya.", "USER_PERSONAL_INFO"),
    ("I have a golden retriever named Biscuit.", "USER_PERSONAL_INFO"),
    ("Please keep answers under three sentences.", "EXPLICIT_INSTRUCTIONS"),
    ("I moved to Porto last year.", "USER_PERSONAL_INFO"),
    ("My flight to Tokyo leaves on June 12th.", "KEY_CONVERSATION_DETAILS"),
    ("I play the cello in a community orchestra.", "USER_PERSONAL_INFO"),
    ("I prefer window seats on planes.", "USER_PREFERENCES"),
]

QUERIES = {
    "similarity": [
        ("What pet does the user have?", "I have a golden retriever named Biscuit."),
        ("Does the user have any food allergies?", "I am allergic to peanuts."),
        ("What car does the user own?", "I drive a 2019 Toyota Prius."),
        ("Which musical instrument do I play?", "I play the cello in a community orchestra."),
        ("What language should responses be written in?", "Always reply to me in Portuguese."),
    ],
    "keyword": [
        ("Biscuit the retriever", "I have a golden retriever named Biscuit."),
        ("marathon training", "I am training for the Berlin marathon in September."),
        ("peanuts", "I am allergic to peanuts."),
        ("coffee with sugar?", "I drink my coffee black with no sugar."),
        ("Tokyo flight", "My flight to Tokyo leaves on June 12th."),
    ],
    "hybrid": [
        ("When does my flight to Tokyo leave?", "My flight to Tokyo leaves on June 12th."),
        ("Who is my manager?", "My manager at work is called Priya."),
        ("What is my daughter's birthday?", "My daughter Emma turns seven on March 3rd."),
        ("Where do I work?", "I work as a nurse at Lisbon General Hospital."),
        ("How long should answers be?", "Please keep answers under three sentences."),
    ],
}


@pytest.fixture(scope="module")
def embedder() -> EmbeddingProvider:
    return make_embedding_provider()


@pytest.fixture
async def runtime(database_url: str, tmp_path: Path, embedder: EmbeddingProvider) -> AsyncIterator[Runtime]:
    rt = Runtime(make_settings(tmp_path, database_url), embeddings=embedder)
    try:
        yield rt
    finally:
        await rt.aclose()


class Clock:
    """The service's clock, moved forward by tests instead of sleeping."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    c = Clock()
    monkeypatch.setattr(memory_service, "utcnow", c)
    yield c


async def _add(rt: Runtime, tenant: Tenant, fact: str, topic: str = "USER_PREFERENCES", **extra: Any) -> UUID:
    memory = await rt.memories.create_memory(
        tenant_id=tenant.id, data=MemoryCreate(scope=extra.pop("scope", USER), fact=fact, topic=topic, **extra)
    )
    return memory.id


async def _add_facts_hourly(rt: Runtime, tenant: Tenant) -> datetime:
    """Add FACTS an hour apart from three days ago, with confidences 0.5-0.9; return the first time."""
    base = utcnow() - timedelta(days=3)
    for k, (fact, topic) in enumerate(FACTS):
        await _add(rt, tenant, fact, topic, confidence=0.5 + (k % 5) / 10, event_time=base + timedelta(hours=k))
    return base


def _retrieve(query: str | None = None, **extra: Any) -> RetrieveRequest:
    return RetrieveRequest(scope=extra.pop("scope", USER), query=query, **extra)


# -- revisions under concurrency -------------------------------------------------------------------------------


async def test_fifty_concurrent_updates_through_the_service_get_revisions_1_to_51(
    runtime: Runtime, tenant: Tenant
) -> None:
    memory_id = await _add(runtime, tenant, "I have read 0 books this year.", "USER_PERSONAL_INFO")

    async def bump(i: int) -> None:
        await runtime.memories.update_memory(
            tenant_id=tenant.id, memory_id=memory_id, data=MemoryUpdate(fact=f"I have read {i + 1} books this year.")
        )

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(bump, i)
    page = await runtime.memories.list_revisions(tenant_id=tenant.id, memory_id=memory_id)
    numbers = [r.revision_number for r in page.items]
    assert numbers == list(range(1, 52))
    # Each revision's validity ends where the next one's begins: a gap-free timeline.
    for earlier, later in zip(page.items, page.items[1:], strict=False):
        assert earlier.valid_to == later.valid_from
    current = await runtime.memories.get_memory(tenant_id=tenant.id, memory_id=memory_id)
    assert current.fact == page.items[-1].fact and current.revision == 51


# -- TTL --------------------------------------------------------------------------------------------------------


async def test_expired_memories_are_never_returned_and_the_sweep_records_a_deletion(
    runtime: Runtime, tenant: Tenant, clock: Clock
) -> None:
    bank = await runtime.memories.create_bank(
        tenant_id=tenant.id, data=MemoryBankCreate(name="short", ttl_config=TTLConfig(create_ttl="1h"))
    )
    short = await _add(runtime, tenant, "I am at the airport right now.", "KEY_CONVERSATION_DETAILS", bank_id=bank.id)
    lasting = await _add(runtime, tenant, "I am at the airport every Monday.", "KEY_CONVERSATION_DETAILS",
                         bank_id=bank.id, ttl="30d")
    assert (await runtime.memories.get_memory(tenant_id=tenant.id, memory_id=short)).fact.endswith("right now.")

    clock.offset = timedelta(hours=2)  # the short memory's hour has passed
    with pytest.raises(NotFound):
        await runtime.memories.get_memory(tenant_id=tenant.id, memory_id=short)  # served from the cache
    page = await runtime.memories.list_memories(tenant_id=tenant.id, filters=MemoryFilter(bank_id=bank.id))
    assert [m.id for m in page.items] == [lasting]
    for mode in ("similarity", "keyword", "hybrid"):
        found = await runtime.memories.retrieve_memories(
            tenant_id=tenant.id, request=_retrieve("airport", bank_id=bank.id, mode=mode)
        )
        assert [r.memory.id for r in found.memories] == [lasting], mode
    newest = await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=_retrieve(bank_id=bank.id))
    assert [r.memory.id for r in newest.memories] == [lasting]
    with pytest.raises(NotFound):
        await runtime.memories.update_memory(tenant_id=tenant.id, memory_id=short, data=MemoryUpdate(confidence=0.1))

    done = await runtime.run_maintenance()
    assert done["memories_expired"] >= 1
    revisions = (await runtime.memories.list_revisions(tenant_id=tenant.id, memory_id=short)).items
    assert [r.action for r in revisions] == ["CREATED", "DELETED"]
    assert revisions[1].metadata == {"reason": "ttl"}
    expiry = (await runtime.memories.list_memories(
        tenant_id=tenant.id, filters=MemoryFilter(bank_id=bank.id, include_deleted=True)
    )).items
    swept = next(m for m in expiry if m.id == short)
    assert swept.is_deleted and swept.valid_to == swept.expires_at == revisions[1].valid_from
    assert await runtime.memories.expire_memories() == 0  # nothing left to expire, nothing expired twice
    # What was true before the expiry still reads back.
    before = swept.expires_at - timedelta(minutes=1) if swept.expires_at else utcnow()
    then = await runtime.memories.list_memories(
        tenant_id=tenant.id, filters=MemoryFilter(bank_id=bank.id, as_of=before)
    )
    assert short in [m.id for m in then.items]


# -- retrieval ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["similarity", "keyword", "hybrid"])
async def test_retrieval_ranks_the_relevant_memory_first(runtime: Runtime, tenant: Tenant, mode: str) -> None:
    ids = {fact: await _add(runtime, tenant, fact, topic) for fact, topic in FACTS}
    await _add(runtime, tenant, "I have a golden retriever named Biscuit.", "USER_PERSONAL_INFO",
               scope={"user_id": "someone-else"})
    for query, expected in QUERIES[mode]:
        found = await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=_retrieve(query, mode=mode))
        assert found.memories, query
        top = found.memories[0]
        assert top.memory.fact == expected, (query, [r.memory.fact for r in found.memories[:3]])
        assert top.memory.id == ids[expected]  # from this scope, not the other user's copy
        assert all(r.memory.scope == USER for r in found.memories)
        expected_signals = {"similarity": {"similarity"}, "keyword": {"keyword"},
                            "hybrid": {"similarity", "keyword", "session", "time"}}[mode]
        assert set(top.scores) == expected_signals
        assert [r.score for r in found.memories] == sorted((r.score for r in found.memories), reverse=True)


async def test_retrieval_never_returns_deleted_memories_and_filters_apply(runtime: Runtime, tenant: Tenant) -> None:
    ids = {fact: await _add(runtime, tenant, fact, topic, confidence=0.5 if "coffee" in fact else 1.0)
           for fact, topic in FACTS}
    dog = ids["I have a golden retriever named Biscuit."]
    await runtime.memories.delete_memory(tenant_id=tenant.id, memory_id=dog)
    for mode in ("similarity", "keyword", "hybrid"):
        found = await runtime.memories.retrieve_memories(
            tenant_id=tenant.id, request=_retrieve("golden retriever Biscuit dog", mode=mode, top_k=100)
        )
        assert dog not in [r.memory.id for r in found.memories], mode
        topical = await runtime.memories.retrieve_memories(
            tenant_id=tenant.id,
            request=_retrieve("coffee", mode=mode, filters=RetrieveFilters(topics=["EXPLICIT_INSTRUCTIONS"])),
        )
        assert {r.memory.topic for r in topical.memories} <= {"EXPLICIT_INSTRUCTIONS"}
        confident = await runtime.memories.retrieve_memories(
            tenant_id=tenant.id, request=_retrieve("coffee", mode=mode, filters=RetrieveFilters(min_confidence=0.9))
        )
        assert ids["I drink my coffee black with no sugar."] not in [r.memory.id for r in confident.memories]
    with pytest.raises(Invalid) as err:
        await runtime.memories.retrieve_memories(
            tenant_id=tenant.id, request=_retrieve("x", filters=RetrieveFilters(topics=["UNKNOWN"]))
        )
    assert err.value.errors[0].field == "body.filters.topics"


async def test_retrieval_without_query_is_newest_first_and_top_k_bounded(runtime: Runtime, tenant: Tenant) -> None:
    created = [await _add(runtime, tenant, fact, topic) for fact, topic in FACTS[:6]]
    found = await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=_retrieve(top_k=4))
    assert [r.memory.id for r in found.memories] == list(reversed(created))[:4]
    again = await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=_retrieve(top_k=4))  # cached
    assert [r.memory.id for r in again.memories] == [r.memory.id for r in found.memories]
    await runtime.memories.delete_memory(tenant_id=tenant.id, memory_id=created[-1])
    newest = await _add(runtime, tenant, "I started learning Japanese.", "USER_PERSONAL_INFO")
    after = await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=_retrieve(top_k=3))
    assert [r.memory.id for r in after.memories] == [newest, created[-2], created[-3]]
    filtered = await runtime.memories.retrieve_memories(
        tenant_id=tenant.id, request=_retrieve(filters=RetrieveFilters(topics=["EXPLICIT_INSTRUCTIONS"]))
    )
    assert [r.memory.fact for r in filtered.memories] == ["Always reply to me in Portuguese."]


async def test_hybrid_boosts_reorder_by_recency_and_confidence(runtime: Runtime, tenant: Tenant, clock: Clock) -> None:
    clock.offset = -timedelta(days=300)
    old = await _add(runtime, tenant, "I like to hike in the Alps.", confidence=1.0)
    clock.offset = timedelta()
    new = await _add(runtime, tenant, "I like to hike in the Pyrenees.", confidence=0.2)
    plain = await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=_retrieve("hiking mountains"))
    assert {r.memory.id for r in plain.memories} == {old, new}
    recent = await runtime.memories.retrieve_memories(
        tenant_id=tenant.id, request=_retrieve("hiking mountains", recency_weight=5.0, recency_half_life="7d")
    )
    assert recent.memories[0].memory.id == new
    confident = await runtime.memories.retrieve_memories(
        tenant_id=tenant.id, request=_retrieve("hiking mountains", confidence_weight=1.0)
    )
    assert confident.memories[0].memory.id == old


# -- the transaction-scoped primitives (memory generation's contract) ---------------------------------------------


async def test_primitives_compose_in_one_transaction_and_see_their_own_writes(
    runtime: Runtime, tenant: Tenant, embedder: EmbeddingProvider
) -> None:
    memories = runtime.memories
    bank = await memories.get_bank(tenant_id=tenant.id, bank_id=None)
    assert bank.name == "default" and bank.scope_keys == ["user_id"]
    stale = await _add(runtime, tenant, "I live in Madrid.", "USER_PERSONAL_INFO")
    facts = ["I live in Lisbon now.", "I have two cats."]
    vectors = await embedder.embed(facts)
    async with runtime.db.write() as tx:
        near = await memories.neighbours(tx, tenant_id=tenant.id, bank_id=bank.id, scope=USER, vectors=vectors)
        assert near[0][0][0].id == stale and 0 < near[0][0][1] <= 1
        updated = await memories.write_update(
            tx, tenant_id=tenant.id, memory_id=stale, fact=facts[0], embedding=vectors[0], bank=bank,
            metadata_patch={"source_event_ids": ["e1"]}, extracted_memories=["I moved to Lisbon"],
        )
        created = await memories.write_create(
            tx, tenant_id=tenant.id, bank=bank, scope=USER, fact=facts[1], topic="USER_PERSONAL_INFO",
            confidence=0.8, embedding=vectors[1], metadata={"source_event_ids": ["e2"]},
        )
        again = await memories.neighbours(tx, tenant_id=tenant.id, bank_id=bank.id, scope=USER, vectors=vectors[1:])
        assert again[0][0][0].id == created.id and again[0][0][1] == pytest.approx(1.0, abs=1e-4)
        deleted = await memories.write_delete(tx, tenant_id=tenant.id, memory_id=created.id, reason="retracted")
        assert deleted.is_deleted
        with pytest.raises(Invalid):
            await memories.write_create(
                tx, tenant_id=tenant.id, bank=bank, scope={"team": "x"}, fact="x", topic="USER_PREFERENCES",
                confidence=1.0, embedding=vectors[1],
            )
    await memories.invalidate(tenant_id=tenant.id, memory_ids=[updated.id, created.id], scope=USER)
    current = await memories.get_memory(tenant_id=tenant.id, memory_id=stale)
    assert current.fact == "I live in Lisbon now." and current.metadata == {"source_event_ids": ["e1"]}
    assert current.source_type == "direct"  # an update keeps how the memory was created
    history = (await memories.list_revisions(tenant_id=tenant.id, memory_id=stale)).items
    assert history[-1].extracted_memories == ["I moved to Lisbon"]
    created_history = (await memories.list_revisions(tenant_id=tenant.id, memory_id=created.id)).items
    assert [(r.action, r.metadata) for r in created_history] == [("CREATED", {}), ("DELETED", {"reason": "retracted"})]
    with pytest.raises(NotFound):
        await memories.get_memory(tenant_id=tenant.id, memory_id=created.id)


async def test_a_failed_transaction_writes_nothing(
    runtime: Runtime, tenant: Tenant, embedder: EmbeddingProvider
) -> None:
    bank = await runtime.memories.get_bank(tenant_id=tenant.id, bank_id=None)
    vector = await embedder.embed_one("I collect stamps.")
    with pytest.raises(RuntimeError):
        async with runtime.db.write() as tx:
            await runtime.memories.write_create(
                tx, tenant_id=tenant.id, bank=bank, scope=USER, fact="I collect stamps.",
                topic="USER_PREFERENCES", confidence=1.0, embedding=vector,
            )
            raise RuntimeError("the job failed half-way")
    page = await runtime.memories.list_memories(tenant_id=tenant.id, filters=MemoryFilter(include_deleted=True))
    assert page.items == []


# -- caches --------------------------------------------------------------------------------------------------------


@pytest.mark.redis
async def test_no_stale_read_after_a_write_with_redis(
    database_url: str, redis_url: str, tmp_path: Path, embedder: EmbeddingProvider
) -> None:
    rt = Runtime(make_settings(tmp_path, database_url, redis_url=redis_url), embeddings=embedder)
    try:
        tenant = await new_tenant(rt)
        memory_id = await _add(rt, tenant, "I prefer dark mode interfaces.")
        assert await rt.cache.get(f"memory:{memory_id}") is not None  # written through on create
        first = await rt.memories.get_memory(tenant_id=tenant.id, memory_id=memory_id)
        newest = await rt.memories.retrieve_memories(tenant_id=tenant.id, request=_retrieve())
        assert [r.memory.fact for r in newest.memories] == [first.fact]

        await rt.memories.update_memory(
            tenant_id=tenant.id, memory_id=memory_id, data=MemoryUpdate(fact="I prefer light mode interfaces.")
        )
        current = await rt.memories.get_memory(tenant_id=tenant.id, memory_id=memory_id)
        assert current.fact == "I prefer light mode interfaces."
        newest = await rt.memories.retrieve_memories(tenant_id=tenant.id, request=_retrieve())
        assert [r.memory.fact for r in newest.memories] == ["I prefer light mode interfaces."]

        second = await _add(rt, tenant, "I use a standing desk.")
        newest = await rt.memories.retrieve_memories(tenant_id=tenant.id, request=_retrieve())
        assert [r.memory.id for r in newest.memories] == [second, memory_id]

        # A slow reader that read revision 1 cannot put it back over revision 2.
        stale = json.dumps({"tenant_id": str(tenant.id), "memory": first.model_dump(mode="json")})
        assert not await rt.cache.set(f"memory:{memory_id}", stale, ttl=60, version=1)

        await rt.memories.delete_memory(tenant_id=tenant.id, memory_id=second, hard=True)
        with pytest.raises(NotFound):
            await rt.memories.get_memory(tenant_id=tenant.id, memory_id=second)
        newest = await rt.memories.retrieve_memories(tenant_id=tenant.id, request=_retrieve())
        assert [r.memory.id for r in newest.memories] == [memory_id]
        other = await new_tenant(rt)
        with pytest.raises(NotFound):  # the cache entry is the tenant's only
            await rt.memories.get_memory(tenant_id=other.id, memory_id=memory_id)
    finally:
        await rt.aclose()


# -- re-embedding and an external vector index ---------------------------------------------------------------------


async def test_reembed_restores_similarity_after_a_model_change(runtime: Runtime, tenant: Tenant) -> None:
    ids = [await _add(runtime, tenant, fact, topic) for fact, topic in FACTS[:5]]
    async with runtime.db.write() as db:  # as if embedded by a model this server no longer runs
        await db.execute(
            update(MemoryRow).where(MemoryRow.id.in_(ids)).values(
                embedding=np.ones(8, dtype=np.float32) / np.sqrt(8), embedding_model="old-model"
            )
        )
    request = _retrieve("food allergies", mode="similarity")
    assert (await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=request)).memories == []
    progress: list[tuple[int, int]] = []
    count = await runtime.memories.reembed_bank(
        tenant_id=tenant.id, batch_size=2, progress=lambda done, total: progress.append((done, total))
    )
    assert count == 5 and progress[-1] == (5, 5)
    found = await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=request)
    assert found.memories[0].memory.fact == "I am allergic to peanuts."
    assert found.memories[0].memory.embedding_model == runtime.embeddings.model


async def test_an_external_qdrant_index_mirrors_writes_and_serves_similarity(
    runtime: Runtime, tenant: Tenant, embedder: EmbeddingProvider
) -> None:
    pytest.importorskip("qdrant_client", reason="the qdrant extra is not installed")
    from contextiq.core.search.qdrant import QdrantVectorIndex

    index = QdrantVectorIndex(location=":memory:")
    service = MemoryService(db=runtime.db, cache=runtime.cache, embeddings=lambda: embedder, vector_index=index)
    try:
        created = {}
        for fact, topic in FACTS[:8]:
            memory = await service.create_memory(tenant_id=tenant.id, data=MemoryCreate(scope=USER, fact=fact,
                                                                                        topic=topic))
            created[fact] = memory.id
        partition = {"tenant_id": str(tenant.id), "bank_id": str(memory.bank_id), "scope_key": '{"user_id":"u1"}'}
        assert await index.count(collection="memories", partition=partition) == 8
        found = await service.retrieve_memories(
            tenant_id=tenant.id, request=_retrieve("food allergies", mode="similarity")
        )
        assert found.memories[0].memory.fact == "I am allergic to peanuts."
        await service.delete_memory(tenant_id=tenant.id, memory_id=created["I am allergic to peanuts."])
        assert await index.count(collection="memories", partition=partition) == 7
        found = await service.retrieve_memories(
            tenant_id=tenant.id, request=_retrieve("food allergies", mode="similarity")
        )
        assert "I am allergic to peanuts." not in [r.memory.fact for r in found.memories]
    finally:
        await index.aclose()


async def test_keyword_query_of_only_stop_words_still_matches(runtime: Runtime, tenant: Tenant) -> None:
    motto = await _add(runtime, tenant, "To be or not to be is my motto.", "USER_PERSONAL_INFO")
    await _add(runtime, tenant, "I prefer window seats on planes.")
    found = await runtime.memories.retrieve_memories(
        tenant_id=tenant.id, request=_retrieve("to be or not", mode="keyword")
    )
    assert [r.memory.id for r in found.memories][:1] == [motto]


async def test_keyword_ranking_weighs_rare_words_above_common_ones(runtime: Runtime, tenant: Tenant) -> None:
    # "coffee" is in every memory, "kayak" in one: BM25's inverse document frequency puts the memory
    # with the rare word first, on both databases (ts_rank_cd alone would rank the two-"coffee" one).
    for fact in ("Coffee with Ana after work.", "Coffee, more coffee, then coffee again.", "Coffee at the lake."):
        await _add(runtime, tenant, fact)
    kayak = await _add(runtime, tenant, "Coffee before we went to kayak on the river.")
    found = await runtime.memories.retrieve_memories(
        tenant_id=tenant.id, request=_retrieve("coffee and kayak", mode="keyword")
    )
    ranked = [r.memory.id for r in found.memories]
    assert ranked[0] == kayak and len(ranked) == 4
    scores = [r.score for r in found.memories]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0


async def test_keyword_search_keeps_phrases_negations_and_scope(runtime: Runtime, tenant: Tenant) -> None:
    near = await _add(runtime, tenant, "The dark mode setting is on.")
    await _add(runtime, tenant, "Mode of transport: dark blue bike.")
    other = await _add(runtime, tenant, "dark mode everywhere", scope={"user_id": "u2"})
    phrase = await runtime.memories.retrieve_memories(
        tenant_id=tenant.id, request=_retrieve('"dark mode"', mode="keyword")
    )
    assert [r.memory.id for r in phrase.memories] == [near]
    negated = await runtime.memories.retrieve_memories(
        tenant_id=tenant.id, request=_retrieve("dark -bike", mode="keyword")
    )
    assert [r.memory.id for r in negated.memories] == [near]
    assert other not in [r.memory.id for r in negated.memories]


async def test_hybrid_scope_scan_ranks_as_the_indexed_path_does(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL reads a small scope in one statement (`scope_scan`); a big one, and SQLite, go
    # through the indexes. Both must give the same answers, filters included.
    base = await _add_facts_hourly(runtime, tenant)
    gone = await _add(runtime, tenant, "I prefer coffee in the dark.", event_time=base)
    await runtime.memories.delete_memory(tenant_id=tenant.id, memory_id=gone)
    requests = [
        _retrieve("What coffee does the user prefer?"),
        _retrieve("dark mode and planes", filters=RetrieveFilters(topics=["USER_PREFERENCES"])),
        _retrieve("what about work", filters=RetrieveFilters(min_confidence=0.7)),
        _retrieve("trips and flights", filters=RetrieveFilters(
            event_time_after=base + timedelta(hours=5), event_time_before=base + timedelta(hours=15))),
        _retrieve("to be or not"),  # only stop words
    ]
    service = runtime.memories

    async def answers() -> list[list[tuple[UUID, float]]]:
        out = []
        for request in requests:
            found = await service.retrieve_memories(tenant_id=tenant.id, request=request)
            out.append([(r.memory.id, round(r.score, 6)) for r in found.memories])
        return out

    scanned = await answers()
    assert all(gone not in [i for i, _ in a] for a in scanned)
    assert scanned[0] and all(len(a) <= 10 for a in scanned)
    if runtime.db.is_postgres:
        # While other hybrid queries run, PostgreSQL computes the cosines (`PG_SCOPE_SCAN_COSINE`):
        # the same answers, in float4 sums rather than numpy's float64.
        def same(got: list[list[tuple[UUID, float]]]) -> None:
            assert [[i for i, _ in a] for a in got] == [[i for i, _ in a] for a in scanned]
            for one, other in zip(got, scanned, strict=True):
                assert [s for _, s in one] == pytest.approx([s for _, s in other], abs=1e-5)

        statements: list[str] = []
        fetch = memory_store.PlainStatement.fetch

        async def recording(self: memory_store.PlainStatement, conn: Any, params: Any) -> list[Any]:
            statements.append(self.sql)
            return await fetch(self, conn, params)

        monkeypatch.setattr(memory_store.PlainStatement, "fetch", recording)
        monkeypatch.setattr(service, "_pg_hybrids_in_flight", 1)  # as if another query were running
        same(await answers())
        assert memory_store.PG_SCOPE_SCAN_COSINE.sql in statements
        monkeypatch.setattr(service, "_pg_hybrids_in_flight", 0)
        statements.clear()
        together = await asyncio.gather(*(
            service.retrieve_memories(tenant_id=tenant.id, request=r) for r in requests
        ))  # the first runs alone, the others while it does
        same([[(r.memory.id, round(r.score, 6)) for r in found.memories] for found in together])
        assert memory_store.PG_SCOPE_SCAN.sql in statements and memory_store.PG_SCOPE_SCAN_COSINE.sql in statements
        assert service._pg_hybrids_in_flight == 0
        monkeypatch.undo()
    monkeypatch.setattr(service, "_scans_scope", False)
    service._timelines = memory_service.TimelineCache()
    indexed = await answers()
    monkeypatch.setattr(service, "_scans_scope", True)
    monkeypatch.setattr(memory_service, "SCOPE_SCAN_CAP", 3)  # the scope is now "big": indexed path
    service._timelines = memory_service.TimelineCache()
    assert await answers() == indexed
    if runtime.db.is_postgres:  # one SQL statement, the same BM25 as the indexed path
        # The scan computes the cosines in numpy (float64), pgvector in float4 sums: equal to 1e-5.
        assert [[i for i, _ in a] for a in scanned] == [[i for i, _ in a] for a in indexed]
        for got, want in zip(scanned, indexed, strict=True):
            assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)
    else:  # BM25 over the scope's statistics here, over the table's in FTS5: the filters must agree
        facts = {m.id: m for m in (await service.list_memories(
            tenant_id=tenant.id, filters=MemoryFilter(scope=USER), cursor=None, limit=100)).items}
        assert {facts[i].topic for i, _ in scanned[1]} <= {"USER_PREFERENCES"}
        assert all(facts[i].confidence >= 0.7 - 1e-6 for i, _ in scanned[2])
        window = (base + timedelta(hours=5), base + timedelta(hours=15))
        assert all(window[0] <= facts[i].event_time < window[1] for i, _ in scanned[3])  # type: ignore[operator]
        assert scanned[4] == indexed[4]  # only stop words: FTS5 ranks the keywords on both paths


@pytest.mark.postgres
async def test_hybrid_cosines_in_postgresql_skip_vectors_that_cannot_be_compared(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A memory embedded by another model, one whose vector has other dimensions and a zero vector
    # have no similarity (0.0 in `scores`) whether the cosines come from numpy or from PostgreSQL.
    runtime = Runtime(make_settings(tmp_path, postgres_url))
    try:
        await _cosines_scenario(runtime, await new_tenant(runtime), monkeypatch)
    finally:
        await runtime.aclose()


async def _cosines_scenario(runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [await _add(runtime, tenant, fact, topic) for fact, topic in FACTS[:6]]
    dims = len(await runtime.embeddings.embed_one("x"))
    odd = {
        ids[0]: (np.ones(dims, dtype=np.float32), "old-model"),
        ids[1]: (np.ones(8, dtype=np.float32), runtime.embeddings.model),
        ids[2]: (np.zeros(dims, dtype=np.float32), runtime.embeddings.model),
    }
    async with runtime.db.write() as db:
        for memory_id, (vector, model) in odd.items():
            await db.execute(
                update(MemoryRow).where(MemoryRow.id == memory_id).values(embedding=vector, embedding_model=model)
            )
    request = _retrieve("What food is the user allergic to, and where do they travel?", top_k=6)

    async def similarities() -> dict[UUID, float]:
        found = await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=request)
        assert {r.memory.id for r in found.memories} == set(ids)
        return {r.memory.id: r.scores["similarity"] for r in found.memories}

    alone = await similarities()
    monkeypatch.setattr(runtime.memories, "_pg_hybrids_in_flight", 1)
    busy = await similarities()
    assert [alone[i] for i in odd] == [busy[i] for i in odd] == [0.0, 0.0, 0.0]
    assert [alone[i] for i in ids[3:]] == pytest.approx([busy[i] for i in ids[3:]], abs=1e-5)
    assert all(alone[i] != 0.0 for i in ids[3:])


async def test_min_confidence_keeps_a_memory_exactly_at_the_bound(runtime: Runtime, tenant: Tenant) -> None:
    # PostgreSQL keeps confidence as a 4-byte REAL: 0.7 must still pass `min_confidence: 0.7`.
    at = await _add(runtime, tenant, "I swim every morning.", confidence=0.7)
    below = await _add(runtime, tenant, "I swim on Sundays.", confidence=0.69)
    for mode in ("similarity", "keyword", "hybrid"):
        found = await runtime.memories.retrieve_memories(
            tenant_id=tenant.id, request=_retrieve("swim", mode=mode, filters=RetrieveFilters(min_confidence=0.7))
        )
        assert [r.memory.id for r in found.memories] == [at], mode
    assert below != at


async def test_sqlite_fts_index_holds_each_memory_under_its_scope_token(sqlite_url: str, tmp_path: Path) -> None:
    runtime = Runtime(make_settings(tmp_path, sqlite_url))  # FTS5 is SQLite's
    try:
        await _fts_scenario(runtime, await new_tenant(runtime))
    finally:
        await runtime.aclose()


async def _fts_scenario(runtime: Runtime, tenant: Tenant) -> None:

    mine = await _add(runtime, tenant, "I keep bees in the garden.")
    await _add(runtime, tenant, "Bees, bees everywhere.", scope={"user_id": "u2"})
    bank = await runtime.memories.get_bank(tenant_id=tenant.id, bank_id=None)
    token = MEMORY_TEXT.partition_token({"tenant_id": tenant.id, "bank_id": bank.id, "scope_key": scope_key(USER)})

    async def in_scope_matching(words: str) -> int:
        async with runtime.db.read() as db:
            match = f'part : "{token}" AND fact : ({words})'
            return int(await db.scalar(text("SELECT count(*) FROM memories_fts WHERE memories_fts MATCH :m"),
                                       {"m": match}) or 0)

    assert await in_scope_matching('"bees"') == 1  # the other scope's bees are not under this token
    await runtime.memories.update_memory(tenant_id=tenant.id, memory_id=mine, data=MemoryUpdate(fact="I keep wasps."))
    assert await in_scope_matching('"bees"') == 0 and await in_scope_matching('"wasps"') == 1
    found = await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=_retrieve("wasps", mode="keyword"))
    assert [r.memory.id for r in found.memories] == [mine]
    await runtime.memories.delete_memory(tenant_id=tenant.id, memory_id=mine, hard=True)
    assert await in_scope_matching('"wasps"') == 0


async def test_similarity_in_one_statement_equals_the_indexed_path(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL answers `similarity` with one statement (`PG_SIMILAR`); the vector index path must agree.
    base = await _add_facts_hourly(runtime, tenant)
    requests = [
        _retrieve("What pet does the user have?", mode="similarity", top_k=5),
        _retrieve("food", mode="similarity", filters=RetrieveFilters(topics=["USER_PREFERENCES"], min_confidence=0.7)),
        _retrieve("travel", mode="similarity", filters=RetrieveFilters(event_time_after=base + timedelta(hours=4))),
    ]

    async def answers() -> list[list[tuple[UUID, float, str]]]:
        out = []
        for request in requests:
            found = await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=request)
            out.append([(r.memory.id, round(r.score, 5), r.memory.model_dump_json()) for r in found.memories])
        return out

    fast = await answers()
    monkeypatch.setattr(runtime.memories, "_scans_scope", False)
    assert await answers() == fast
    assert len(fast[0]) == 5 and fast[1] and fast[2]


async def test_keyword_in_one_statement_equals_the_indexed_path(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL answers `keyword` with one statement (`PG_KEYWORD`); keyword_search must agree.
    await _add_facts_hourly(runtime, tenant)
    requests = [
        _retrieve("I prefer my coffee black, and window seats", mode="keyword", top_k=5),
        _retrieve('"dark mode" -planes', mode="keyword"),
        _retrieve("prefer", mode="keyword", filters=RetrieveFilters(topics=["USER_PREFERENCES"], min_confidence=0.7)),
        _retrieve("to be or not", mode="keyword"),  # only stop words: the trigram fallback
    ]

    async def answers() -> list[list[tuple[UUID, float]]]:
        out = []
        for request in requests:
            found = await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=request)
            out.append([(r.memory.id, round(r.score, 5)) for r in found.memories])
        return out

    fast = await answers()

    async def no_fast_path(*_: Any) -> None:
        return None

    monkeypatch.setattr(runtime.memories, "_keyword", no_fast_path)
    assert await answers() == fast
    assert len(fast[0]) >= 3 and len(fast[1]) == 1


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
async def test_queries_with_search_syntax_characters_never_fail(runtime: Runtime, tenant: Tenant, mode: str) -> None:
    # Words reach to_tsquery and FTS5 MATCH quoted, so operators and quotes in a query are plain text.
    await _add(runtime, tenant, "O'Brien paid 50% of the café bill & left (early).")
    hostile = ["O'Brien", "a & b | !c", "(early", 'café "bill', "50%:*", "'; DROP TABLE memories; --",
               "NEAR(a b)", "x AND OR NOT", "\\", "-", '"', "ÿ üñî", "*", "a:b", "<->"]
    for query in hostile:
        found = await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=_retrieve(query, mode=mode))
        assert isinstance(found.memories, list), query
    hit = await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=_retrieve("café O'Brien", mode=mode))
    assert hit.memories and "café" in hit.memories[0].memory.fact
