"""Per-bank reranker settings (`retrieval_config`): validation, defaults, updates, and their effect on ranking."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from contextiq.core.clock import utcnow
from contextiq.core.db import migrate
from contextiq.core.db.types import JSONType, StrList, UTCDateTime
from contextiq.core.llm.embeddings import EmbeddingProvider, make_embedding_provider
from contextiq.core.search.rerank import DEFAULT_RERANK
from contextiq.memories.models import (
    MemoryBankCreate,
    MemoryBankUpdate,
    MemoryCreate,
    RetrievalConfig,
    RetrieveRequest,
    format_duration,
)
from contextiq.memories.store import MemoryStore
from contextiq.platform.tables import OrganizationRow
from contextiq.runtime import Runtime
from contextiq.sdk import AsyncEmbeddedClient
from tests.conftest import Tenant, empty_postgres, make_settings

USER = {"user_id": "u1"}
DEFAULTS: dict[str, Any] = {
    "default_mode": "hybrid",
    "keyword_weight": 0.5,
    "neighbour_weight": 0.4,
    "neighbour_decay": [1.0, 1.0],
    "session_weight": 0.5,
    "session_top": 2,
    "session_gap": "1h",
    "time_weight": 2.0,
}
# The query names the cat's name (a keyword hit with little meaning) and paraphrases the finance habit
# (a close meaning with no shared word): similarity and keyword disagree on the best memory.
QUERY = "quarterly budget spreadsheet"
KEYWORD_BEST = "My cat is named Spreadsheet."
SIMILARITY_BEST = "I review the company's finances and expense reports every three months."
OTHERS = ["I like hiking in the mountains.", "My sister lives in Porto.", "I play the cello on Sundays."]


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


def _field_errors(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in response.json()["errors"]]


async def _bank(client: httpx.AsyncClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/memory-banks", json={"name": f"b-{uuid.uuid4().hex[:8]}", **body}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    bank: dict[str, Any] = response.json()
    return bank


async def _remember(client: httpx.AsyncClient, tenant: Tenant, bank_id: str, facts: list[str]) -> None:
    for fact in facts:
        body = {"bank_id": bank_id, "scope": USER, "fact": fact, "topic": "USER_PREFERENCES"}
        response = await client.post("/v1/memories", json=body, headers=tenant.headers)
        assert response.status_code == 201, response.text


async def _retrieve(client: httpx.AsyncClient, tenant: Tenant, bank_id: str, **extra: Any) -> list[dict[str, Any]]:
    body = {"bank_id": bank_id, "scope": USER, "query": QUERY, "top_k": 5, **extra}
    response = await client.post("/v1/memories:retrieve", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    memories: list[dict[str, Any]] = response.json()["memories"]
    return memories


def _facts(memories: list[dict[str, Any]]) -> list[str]:
    return [m["memory"]["fact"] for m in memories]


# -- the model -----------------------------------------------------------------------------------------------


def test_defaults_are_the_rerankers_defaults() -> None:
    assert RetrievalConfig().rerank_config() == DEFAULT_RERANK
    assert RetrievalConfig.model_validate({}).model_dump(mode="json") == DEFAULTS
    custom = RetrievalConfig(keyword_weight=1.0, neighbour_decay=[], session_gap="30m").rerank_config()
    assert (custom.keyword_weight, custom.radius, custom.session_gap) == (1.0, 0, timedelta(minutes=30))


@pytest.mark.parametrize(
    ("value", "text"),
    [(timedelta(hours=1), "1h"), (timedelta(minutes=90), "90m"), (timedelta(days=14), "2w"),
     (timedelta(seconds=61), "61s")],
)
def test_format_duration_is_the_inverse_of_parse(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


# -- over HTTP -----------------------------------------------------------------------------------------------


async def test_a_new_bank_and_the_default_bank_return_the_defaults(client: httpx.AsyncClient, tenant: Tenant) -> None:
    bank = await _bank(client, tenant)
    assert bank["retrieval_config"] == DEFAULTS
    fetched = await client.get(f"/v1/memory-banks/{bank['id']}", headers=tenant.headers)
    assert fetched.json()["retrieval_config"] == DEFAULTS
    await client.post("/v1/memories", json={"scope": USER, "fact": "I like tea.", "topic": "USER_PREFERENCES"},
                      headers=tenant.headers)
    banks = (await client.get("/v1/memory-banks", headers=tenant.headers)).json()["items"]
    assert [b["retrieval_config"] for b in banks] == [DEFAULTS, DEFAULTS]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"keyword_weight": 1.5}, "keyword_weight"),
        ({"keyword_weight": -0.1}, "keyword_weight"),
        ({"neighbour_weight": 2}, "neighbour_weight"),
        ({"neighbour_decay": [1.0] * 6}, "neighbour_decay"),
        ({"neighbour_decay": [0.5, 1.2]}, "neighbour_decay.1"),
        ({"session_weight": -1}, "session_weight"),
        ({"session_top": 0}, "session_top"),
        ({"session_top": 21}, "session_top"),
        ({"session_gap": "1 hour"}, "session_gap"),
        ({"session_gap": "0m"}, "session_gap"),
        ({"time_weight": 11}, "time_weight"),
        ({"default_mode": "fuzzy"}, "default_mode"),
        ({"rrf_k": 60}, "rrf_k"),
    ],
)
async def test_bad_settings_are_422_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant, config: dict[str, Any], field: str
) -> None:
    created = await client.post("/v1/memory-banks", json={"name": "bad", "retrieval_config": config},
                                headers=tenant.headers)
    assert _field_errors(created) == [f"body.retrieval_config.{field}"]
    bank = await _bank(client, tenant)
    patched = await client.patch(f"/v1/memory-banks/{bank['id']}", json={"retrieval_config": config},
                                 headers=tenant.headers)
    assert _field_errors(patched) == [f"body.retrieval_config.{field}"]
    assert (await client.get("/v1/memory-banks", headers=tenant.headers)).json()["items"][0]["retrieval_config"] == (
        DEFAULTS
    )


async def test_update_round_trips_and_keeps_only_the_given_settings(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    h = tenant.headers
    bank = await _bank(client, tenant, retrieval_config={"session_top": 3})
    assert bank["retrieval_config"] == {**DEFAULTS, "session_top": 3}

    patch = {"keyword_weight": 0.8, "neighbour_decay": [1.0, 0.5, 0.25], "session_gap": "30m"}
    patched = await client.patch(f"/v1/memory-banks/{bank['id']}", json={"retrieval_config": patch}, headers=h)
    assert patched.status_code == 200, patched.text
    expected = {**DEFAULTS, **patch}  # the whole object is replaced: session_top is back to its default
    assert patched.json()["retrieval_config"] == expected
    assert (await client.get(f"/v1/memory-banks/{bank['id']}", headers=h)).json()["retrieval_config"] == expected
    async with runtime.db.read() as db:
        row = await MemoryStore(db).get_bank(tenant_id=tenant.id, bank_id=uuid.UUID(bank["id"]))
    assert row is not None and row.retrieval_config == patch  # defaults are not frozen into the row

    renamed = await client.patch(f"/v1/memory-banks/{bank['id']}", json={"name": "renamed"}, headers=h)
    assert renamed.json()["retrieval_config"] == expected  # omitted: unchanged
    null = await client.patch(f"/v1/memory-banks/{bank['id']}", json={"retrieval_config": None}, headers=h)
    assert _field_errors(null) == ["body.retrieval_config"]
    reset = await client.patch(f"/v1/memory-banks/{bank['id']}", json={"retrieval_config": {}}, headers=h)
    assert reset.json()["retrieval_config"] == DEFAULTS


async def test_keyword_weight_decides_between_keyword_and_similarity(client: httpx.AsyncClient, tenant: Tenant) -> None:
    # Neighbour context off: memories written one after another would lend each other their scores.
    by_keyword = await _bank(client, tenant, retrieval_config={"keyword_weight": 1.0, "neighbour_weight": 0.0})
    by_meaning = await _bank(client, tenant, retrieval_config={"keyword_weight": 0.0, "neighbour_weight": 0.0})
    facts = [SIMILARITY_BEST, KEYWORD_BEST, *OTHERS]
    for bank in (by_keyword, by_meaning):
        await _remember(client, tenant, bank["id"], facts)

    keyword_first = await _retrieve(client, tenant, by_keyword["id"])
    meaning_first = await _retrieve(client, tenant, by_meaning["id"])
    assert _facts(keyword_first)[0] == KEYWORD_BEST
    assert _facts(meaning_first)[0] == SIMILARITY_BEST
    # Pure keyword ranking: the one keyword hit leads, every other memory ties below it.
    assert keyword_first[0]["scores"]["keyword"] > 0
    rest = {m["score"] for m in keyword_first[1:]}
    assert len(rest) == 1 and rest.pop() < keyword_first[0]["score"]
    # Pure similarity ranking: scores fall with cosine similarity.
    similarities = [m["scores"]["similarity"] for m in meaning_first]
    assert similarities == sorted(similarities, reverse=True)

    # Changing the bank changes the next retrieval of the same memories.
    await client.patch(f"/v1/memory-banks/{by_keyword['id']}",
                       json={"retrieval_config": {"keyword_weight": 0.0, "neighbour_weight": 0.0}},
                       headers=tenant.headers)
    assert _facts(await _retrieve(client, tenant, by_keyword["id"]))[0] == SIMILARITY_BEST


async def test_default_mode_applies_when_the_request_names_none(client: httpx.AsyncClient, tenant: Tenant) -> None:
    bank = await _bank(client, tenant, retrieval_config={"default_mode": "keyword"})
    await _remember(client, tenant, bank["id"], [SIMILARITY_BEST, KEYWORD_BEST, *OTHERS])
    implicit = await _retrieve(client, tenant, bank["id"])
    assert _facts(implicit) == [KEYWORD_BEST] and set(implicit[0]["scores"]) == {"keyword"}
    explicit = await _retrieve(client, tenant, bank["id"], mode="hybrid")
    assert len(explicit) == 5 and "session" in explicit[0]["scores"]


async def test_session_gap_cuts_sessions_per_bank(runtime: Runtime, tenant: Tenant) -> None:
    """A changed gap is not served a timeline cut with the old one (the timeline cache keys on it)."""
    memories = runtime.memories
    bank = await memories.create_bank(
        tenant_id=tenant.id,
        data=MemoryBankCreate(name="gaps", retrieval_config=RetrievalConfig(session_weight=5.0, session_top=1)),
    )
    start = utcnow() - timedelta(days=1)
    # Two conversations 10 minutes apart: the finance one, then the cat one.
    for minute, fact in [(0, SIMILARITY_BEST), (1, OTHERS[0]), (11, KEYWORD_BEST), (12, OTHERS[1])]:
        when = start + timedelta(minutes=minute)
        await memories.create_memory(tenant_id=tenant.id, data=MemoryCreate(
            bank_id=bank.id, scope=USER, fact=fact, topic="USER_PREFERENCES", event_time=when
        ))
    request = RetrieveRequest(bank_id=bank.id, scope=USER, query=QUERY, top_k=4)

    async def sessions() -> int:
        ranked = (await memories.retrieve_memories(tenant_id=tenant.id, request=request)).memories
        return len({round(m.scores["session"], 9) for m in ranked})

    assert await sessions() == 1  # a 1h gap: one session, so one session boost
    await memories.update_bank(tenant_id=tenant.id, bank_id=bank.id, data=MemoryBankUpdate(
        retrieval_config=RetrievalConfig(session_weight=5.0, session_top=1, session_gap="5m")
    ))
    assert await sessions() == 2


# -- the SDK -------------------------------------------------------------------------------------------------


async def test_sdk_creates_and_updates_retrieval_config(tmp_path: Path, database_url: str, tenant: Tenant) -> None:
    async with AsyncEmbeddedClient(make_settings(tmp_path, database_url), tenant_id=tenant.id) as sdk:
        bank = await sdk.memory_banks.create("sdk", retrieval_config=RetrievalConfig(keyword_weight=0.9))
        assert bank.retrieval_config == RetrievalConfig(keyword_weight=0.9)
        updated = await sdk.memory_banks.update(bank.id, retrieval_config={"session_gap": "2h"})
        assert updated.retrieval_config.session_gap == "2h" and updated.retrieval_config.keyword_weight == 0.5
        plain = await sdk.memory_banks.create("plain")
        assert plain.retrieval_config == RetrievalConfig()


# -- the migration -------------------------------------------------------------------------------------------


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.sqlite),
                        pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/m.db"
        return
    with empty_postgres("ciq_rc") as url:
        yield url


# memory_bank_configs as migration 0004 left it (the ORM table has the new column).
_OLD_BANKS = sa.table(
    "memory_bank_configs",
    sa.column("id", sa.Uuid()), sa.column("tenant_id", sa.Uuid()), sa.column("name", sa.String()),
    sa.column("memory_topics", JSONType), sa.column("ttl_config", JSONType),
    sa.column("similarity_search_config", JSONType), sa.column("generation_config", JSONType),
    sa.column("enable_revisions", sa.Boolean()), sa.column("scope_keys", StrList), sa.column("metadata", JSONType),
    sa.column("created_at", UTCDateTime()), sa.column("updated_at", UTCDateTime()),
    sa.column("is_active", sa.Boolean()),
)


def test_migration_gives_existing_banks_the_defaults_and_downgrades(empty_url: str, tmp_path: Path) -> None:
    migrate.upgrade(empty_url, "0004")
    org, bank = uuid.uuid4(), uuid.uuid4()

    async def old_bank() -> None:
        engine = create_async_engine(empty_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.insert(OrganizationRow).values(id=org, name="o", slug=f"o-{org.hex}"))
                now = utcnow()
                await conn.execute(sa.insert(_OLD_BANKS).values(
                    id=bank, tenant_id=org, name="old", memory_topics=[], ttl_config={}, similarity_search_config={},
                    generation_config={}, enable_revisions=True, scope_keys=["user_id"], metadata={},
                    created_at=now, updated_at=now, is_active=True,
                ))
        finally:
            await engine.dispose()

    async def read_bank() -> RetrievalConfig:
        rt = Runtime(make_settings(tmp_path, empty_url))
        try:
            return (await rt.memories.get_bank(tenant_id=org, bank_id=bank)).retrieval_config
        finally:
            await rt.aclose()

    asyncio.run(old_bank())
    migrate.upgrade(empty_url)
    assert asyncio.run(migrate.schema_diff(empty_url)) == []
    assert asyncio.run(read_bank()) == RetrievalConfig()
    migrate.downgrade(empty_url, "0004")
    assert asyncio.run(migrate.current_revision(empty_url)) == "0004"
    migrate.upgrade(empty_url)
    assert asyncio.run(read_bank()) == RetrievalConfig()
