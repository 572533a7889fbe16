"""Memories and memory banks over HTTP through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from contextiq.core.llm.embeddings import EmbeddingProvider, make_embedding_provider
from contextiq.runtime import Runtime
from tests.conftest import Tenant, make_settings, new_tenant

USER = {"user_id": "u1"}


@pytest.fixture(scope="module")
def embedder() -> EmbeddingProvider:
    # One model load for the module; the provider is loop-agnostic (worker threads only).
    return make_embedding_provider()


@pytest.fixture
async def runtime(database_url: str, tmp_path: Path, embedder: EmbeddingProvider) -> AsyncIterator[Runtime]:
    rt = Runtime(make_settings(tmp_path, database_url), embeddings=embedder)
    try:
        yield rt
    finally:
        await rt.aclose()


async def _create(client: httpx.AsyncClient, tenant: Tenant, fact: str, **extra: Any) -> dict[str, Any]:
    body = {"scope": USER, "fact": fact, "topic": "USER_PREFERENCES", **extra}
    response = await client.post("/v1/memories", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def _list(client: httpx.AsyncClient, tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/v1/memories", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _field_errors(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in response.json()["errors"]]


# -- the walkthrough of docs/memory.md -------------------------------------------------------------------


async def test_dark_mode_to_light_mode_keeps_one_memory_with_two_revisions(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    dark = await _create(client, tenant, "I prefer dark mode interfaces.")
    assert dark["source_type"] == "direct" and dark["revision"] == 1 and dark["revision_count"] == 0
    await anyio.sleep(0.01)  # two distinct instants on a coarse clock (not a wait for anything)
    before_change = datetime.now(UTC)
    await anyio.sleep(0.01)
    response = await client.patch(
        f"/v1/memories/{dark['id']}", json={"fact": "I prefer light mode interfaces."}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    light = response.json()
    assert light["id"] == dark["id"] and light["fact"] == "I prefer light mode interfaces."
    assert light["revision"] == 2 and light["revision_count"] == 1

    items = await _list(client, tenant, scope=json.dumps(USER))
    assert [m["fact"] for m in items] == ["I prefer light mode interfaces."]

    revisions = (await client.get(f"/v1/memories/{dark['id']}/revisions", headers=tenant.headers)).json()["items"]
    assert [(r["revision_number"], r["action"], r["fact"]) for r in revisions] == [
        (1, "CREATED", "I prefer dark mode interfaces."),
        (2, "UPDATED", "I prefer light mode interfaces."),
    ]
    assert revisions[0]["valid_to"] == revisions[1]["valid_from"]

    then = await _list(client, tenant, scope=json.dumps(USER), as_of=before_change.isoformat())
    assert [m["fact"] for m in then] == ["I prefer dark mode interfaces."]
    now = await _list(client, tenant, scope=json.dumps(USER), as_of=datetime.now(UTC).isoformat())
    assert [m["fact"] for m in now] == ["I prefer light mode interfaces."]
    long_ago = await _list(client, tenant, scope=json.dumps(USER), as_of="2000-01-01T00:00:00Z")
    assert long_ago == []

    retrieved = await client.post(
        "/v1/memories:retrieve",
        json={"scope": USER, "query": "which UI theme does the user like?",
              "filters": {"as_of": before_change.isoformat()}},
        headers=tenant.headers,
    )
    assert [m["memory"]["fact"] for m in retrieved.json()["memories"]] == ["I prefer dark mode interfaces."]


# -- tenant isolation ----------------------------------------------------------------------------------


async def test_every_memory_endpoint_hides_other_tenants_memories(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    memory = await _create(client, tenant, "I live in Lisbon.", topic="USER_PERSONAL_INFO")
    bank = (await client.post("/v1/memory-banks", json={"name": "private"}, headers=tenant.headers)).json()
    other = await new_tenant(runtime)
    h = other.headers
    mid, bid = memory["id"], bank["id"]
    assert (await client.get(f"/v1/memories/{mid}", headers=h)).status_code == 404
    assert (await client.patch(f"/v1/memories/{mid}", json={"fact": "x"}, headers=h)).status_code == 404
    assert (await client.delete(f"/v1/memories/{mid}", headers=h)).status_code == 404
    assert (await client.delete(f"/v1/memories/{mid}", params={"hard": "true"}, headers=h)).status_code == 404
    assert (await client.get(f"/v1/memories/{mid}/revisions", headers=h)).status_code == 404
    rollback = await client.post(f"/v1/memories/{mid}:rollback", json={"revision_number": 1}, headers=h)
    assert rollback.status_code == 404
    assert await _list(client, other, scope=json.dumps(USER)) == []
    retrieve = await client.post("/v1/memories:retrieve", json={"scope": USER, "query": "Lisbon"}, headers=h)
    assert retrieve.json()["memories"] == []
    retrieve = await client.post("/v1/memories:retrieve", json={"scope": USER}, headers=h)
    assert retrieve.json()["memories"] == []
    export = await client.get("/v1/memories:export", headers=h)
    assert export.status_code == 200 and export.text == ""
    # The other tenant's bank is invisible too: read, change, delete, write into, list, export, import.
    assert (await client.get(f"/v1/memory-banks/{bid}", headers=h)).status_code == 404
    assert (await client.patch(f"/v1/memory-banks/{bid}", json={"name": "x"}, headers=h)).status_code == 404
    assert (await client.delete(f"/v1/memory-banks/{bid}", headers=h)).status_code == 404
    create = await client.post(
        "/v1/memories", json={"bank_id": bid, "scope": USER, "fact": "x", "topic": "USER_PREFERENCES"}, headers=h
    )
    assert create.status_code == 404
    assert (await client.get("/v1/memories", params={"bank_id": bid}, headers=h)).status_code == 404
    assert (await client.get("/v1/memories:export", params={"bank_id": bid}, headers=h)).status_code == 404
    line = json.dumps({"scope": USER, "fact": "x", "topic": "USER_PREFERENCES"})
    imported = await client.post("/v1/memories:import", params={"bank_id": bid}, content=line, headers=h)
    assert imported.status_code == 404
    retrieve = await client.post("/v1/memories:retrieve", json={"bank_id": bid, "scope": USER}, headers=h)
    assert retrieve.status_code == 404
    assert (await client.get("/v1/memory-banks", headers=h)).json()["items"] == []
    # ...and the owner still sees everything unchanged.
    assert (await client.get(f"/v1/memories/{mid}", headers=tenant.headers)).json()["revision"] == 1


async def test_memories_need_the_memories_scopes(client: httpx.AsyncClient, runtime: Runtime) -> None:
    reader = await new_tenant(runtime, scopes=["memories:read"])
    response = await client.post(
        "/v1/memories", json={"scope": USER, "fact": "x", "topic": "USER_PREFERENCES"}, headers=reader.headers
    )
    assert response.status_code == 403
    assert (await client.get("/v1/memories", headers=reader.headers)).status_code == 200
    assert (await client.get("/v1/memories")).status_code == 401


# -- validation: 422 naming the field, nothing stored ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"fact": "x" * 2001}, "body.fact"),
        ({"scope": {f"k{i}": "v" for i in range(5)} | {"user_id": "u1"}}, "body.scope"),
        ({"confidence": 1.5}, "body.confidence"),
        ({"topic": "FAVOURITE_COLOURS"}, "body.topic"),
        ({"scope": {"agent_id": "a1"}}, "body.scope"),
        ({"ttl": "5 days"}, "body.ttl"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "body.expires_at"),
        ({"colour": "blue"}, "body.colour"),
    ],
)
async def test_bad_memory_is_422_naming_the_field_and_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    request = {"scope": USER, "fact": "I like tea.", "topic": "USER_PREFERENCES", **body}
    response = await client.post("/v1/memories", json=request, headers=tenant.headers)
    assert field in _field_errors(response)
    assert await _list(client, tenant, include_deleted="true") == []


async def test_scope_keys_and_topics_of_a_bank_are_enforced(client: httpx.AsyncClient, tenant: Tenant) -> None:
    bank = await client.post(
        "/v1/memory-banks",
        json={
            "name": "support",
            "scope_keys": ["user_id", "agent_id"],
            "memory_topics": [
                {"custom_memory_topic": {"label": "DEVICES", "description": "The devices the user owns."}},
                {"managed_memory_topic": {"managed_topic_enum": "USER_PREFERENCES"}},
            ],
        },
        headers=tenant.headers,
    )
    assert bank.status_code == 201, bank.text
    bid = bank.json()["id"]
    base = {"bank_id": bid, "fact": "I own a Pixel 8.", "scope": {"user_id": "u1", "agent_id": "a1"}}
    missing = await client.post("/v1/memories", json={**base, "scope": USER, "topic": "DEVICES"},
                                headers=tenant.headers)
    assert _field_errors(missing) == ["body.scope"]
    assert "agent_id" in missing.json()["detail"]
    managed_not_listed = await client.post("/v1/memories", json={**base, "topic": "USER_PERSONAL_INFO"},
                                           headers=tenant.headers)
    assert _field_errors(managed_not_listed) == ["body.topic"]
    ok = await client.post("/v1/memories", json={**base, "topic": "DEVICES"}, headers=tenant.headers)
    assert ok.status_code == 201, ok.text
    bad_filter = await client.post(
        "/v1/memories:retrieve",
        json={"bank_id": bid, "scope": base["scope"], "query": "phone", "filters": {"topics": ["NOPE"]}},
        headers=tenant.headers,
    )
    assert _field_errors(bad_filter) == ["body.filters.topics"]
    good = await client.post(
        "/v1/memories:retrieve",
        json={"bank_id": bid, "scope": base["scope"], "query": "phone", "filters": {"topics": ["DEVICES"]}},
        headers=tenant.headers,
    )
    assert [m["memory"]["fact"] for m in good.json()["memories"]] == ["I own a Pixel 8."]


# -- memory banks --------------------------------------------------------------------------------------------


async def test_memory_bank_crud_with_strict_ttls_and_unique_names(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    body = {
        "name": "travel",
        "memory_topics": [{"custom_memory_topic": {"label": "TRIPS", "description": "Trips the user plans."}}],
        "few_shot_examples": [{"conversation": "I fly to Oslo in May.", "memories": ["I travel to Oslo in May."]}],
        "ttl_config": {"default_ttl": "365d", "create_ttl": "12h", "generate_updated_ttl": "30m"},
        "generation_config": {"temperature": 0.1},
        "metadata": {"team": "trips"},
    }
    created = await client.post("/v1/memory-banks", json=body, headers=h)
    assert created.status_code == 201, created.text
    bank = created.json()
    assert bank["scope_keys"] == ["user_id"] and bank["enable_revisions"] is True
    assert bank["similarity_search_config"]["vector_size"] == 384
    assert bank["similarity_search_config"]["embedding_model"] == "all-MiniLM-L6-v2-onnx-int8"
    assert (await client.post("/v1/memory-banks", json={"name": "travel"}, headers=h)).status_code == 409

    for field, value in [("default_ttl", "5 days"), ("create_ttl", "12"), ("generate_created_ttl", "0d"),
                         ("generate_updated_ttl", "1y")]:
        bad = await client.post("/v1/memory-banks", json={"name": f"b-{field}", "ttl_config": {field: value}},
                                headers=h)
        assert _field_errors(bad) == [f"body.ttl_config.{field}"]
    wrong_model = await client.post(
        "/v1/memory-banks", json={"name": "m", "similarity_search_config": {"embedding_model": "ada-002"}}, headers=h
    )
    assert _field_errors(wrong_model) == ["body.similarity_search_config.embedding_model"]
    both = await client.post("/v1/memory-banks", json={"name": "t", "memory_topics": [{}]}, headers=h)
    assert _field_errors(both) == ["body.memory_topics.0"]

    # Memories created directly get the bank's create TTL (12h).
    memory = await _create(client, tenant, "I fly to Oslo in May.", bank_id=bank["id"], topic="TRIPS")
    expires = datetime.fromisoformat(memory["expires_at"])
    created_at = datetime.fromisoformat(memory["created_at"])
    assert abs((expires - created_at) - timedelta(hours=12)) < timedelta(seconds=5)

    patched = await client.patch(f"/v1/memory-banks/{bank['id']}", json={"name": "trips", "enable_revisions": False},
                                 headers=h)
    assert patched.status_code == 200 and patched.json()["name"] == "trips"
    assert patched.json()["ttl_config"]["create_ttl"] == "12h"
    listed = (await client.get("/v1/memory-banks", headers=h)).json()["items"]
    assert [b["name"] for b in listed] == ["trips"]
    assert (await client.delete(f"/v1/memory-banks/{bank['id']}", headers=h)).status_code == 409
    forced = await client.delete(f"/v1/memory-banks/{bank['id']}", params={"force": "true"}, headers=h)
    assert forced.status_code == 204
    assert (await client.get(f"/v1/memories/{memory['id']}", headers=h)).status_code == 404
    assert (await client.get(f"/v1/memory-banks/{bank['id']}", headers=h)).status_code == 404


async def test_default_bank_is_created_on_first_write(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await client.get("/v1/memory-banks", headers=tenant.headers)).json()["items"] == []
    memory = await _create(client, tenant, "I like jazz.")
    banks = (await client.get("/v1/memory-banks", headers=tenant.headers)).json()["items"]
    assert [(b["name"], b["id"]) for b in banks] == [("default", memory["bank_id"])]


# -- routes with custom verbs ---------------------------------------------------------------------------------


async def test_custom_verbs_are_not_captured_by_the_memory_id_route(client: httpx.AsyncClient, tenant: Tenant) -> None:
    memory = await _create(client, tenant, "I prefer tea to coffee.")
    h = tenant.headers
    assert (await client.post("/v1/memories:retrieve", json={"scope": USER}, headers=h)).status_code == 200
    assert (await client.get("/v1/memories:export", headers=h)).status_code == 200
    rollback = await client.post(f"/v1/memories/{memory['id']}:rollback", json={"revision_number": 1}, headers=h)
    assert rollback.status_code == 200, rollback.text
    assert (await client.get(f"/v1/memories/{memory['id']}:rollback", headers=h)).status_code in (404, 405)
    assert (await client.get("/v1/memories/not-a-uuid", headers=h)).status_code == 404
    assert (await client.post("/v1/memories:nonsense", json={}, headers=h)).status_code in (404, 405)


# -- writes, revisions, rollback, deletes -------------------------------------------------------------------


async def test_patch_merges_metadata_and_rejects_nulls(client: httpx.AsyncClient, tenant: Tenant) -> None:
    memory = await _create(client, tenant, "I drink green tea.", metadata={"a": 1, "b": 2})
    h = tenant.headers
    response = await client.patch(f"/v1/memories/{memory['id']}", json={"metadata": {"a": None, "c": 3},
                                                                        "confidence": 0.5}, headers=h)
    assert response.json()["metadata"] == {"b": 2, "c": 3} and response.json()["confidence"] == 0.5
    assert _field_errors(await client.patch(f"/v1/memories/{memory['id']}", json={"fact": None}, headers=h)) == [
        "body.fact"
    ]
    assert _field_errors(
        await client.patch(f"/v1/memories/{memory['id']}", json={"topic": "NOPE"}, headers=h)
    ) == ["body.topic"]
    unchanged = (await client.get(f"/v1/memories/{memory['id']}", headers=h)).json()
    assert unchanged["revision"] == 2 and unchanged["topic"] == "USER_PREFERENCES"


async def test_rollback_restores_an_old_revision_as_a_new_one(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    memory = await _create(client, tenant, "My favourite colour is blue.", confidence=0.9)
    mid = memory["id"]
    await client.patch(f"/v1/memories/{mid}", json={"fact": "My favourite colour is green.", "confidence": 0.6},
                       headers=h)
    rolled = await client.post(f"/v1/memories/{mid}:rollback", json={"revision_number": 1}, headers=h)
    assert rolled.status_code == 200
    assert rolled.json()["fact"] == "My favourite colour is blue." and rolled.json()["confidence"] == 0.9
    assert rolled.json()["revision"] == 3
    revisions = (await client.get(f"/v1/memories/{mid}/revisions", headers=h)).json()["items"]
    assert [r["action"] for r in revisions] == ["CREATED", "UPDATED", "UPDATED"]
    assert revisions[2]["metadata"] == {"rollback_to": 1}
    missing = await client.post(f"/v1/memories/{mid}:rollback", json={"revision_number": 9}, headers=h)
    assert _field_errors(missing) == ["body.revision_number"]
    # Rolling back a deleted memory revives it.
    assert (await client.delete(f"/v1/memories/{mid}", headers=h)).status_code == 204
    deletion = await client.post(f"/v1/memories/{mid}:rollback", json={"revision_number": 4}, headers=h)
    assert _field_errors(deletion) == ["body.revision_number"]
    revived = await client.post(f"/v1/memories/{mid}:rollback", json={"revision_number": 2}, headers=h)
    assert revived.status_code == 200 and revived.json()["fact"] == "My favourite colour is green."
    assert (await client.get(f"/v1/memories/{mid}", headers=h)).json()["revision"] == 5


async def test_soft_delete_keeps_history_and_hard_delete_purges(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers
    soft = await _create(client, tenant, "I have a cat named Miso.", topic="USER_PERSONAL_INFO")
    hard = await _create(client, tenant, "I have a dog named Rex.", topic="USER_PERSONAL_INFO")
    assert (await client.delete(f"/v1/memories/{soft['id']}", headers=h)).status_code == 204
    assert (await client.get(f"/v1/memories/{soft['id']}", headers=h)).status_code == 404
    assert (await client.delete(f"/v1/memories/{soft['id']}", headers=h)).status_code == 404
    revisions = (await client.get(f"/v1/memories/{soft['id']}/revisions", headers=h)).json()["items"]
    assert [r["action"] for r in revisions] == ["CREATED", "DELETED"]
    assert [m["id"] for m in await _list(client, tenant)] == [hard["id"]]
    assert {m["id"] for m in await _list(client, tenant, include_deleted="true")} == {soft["id"], hard["id"]}
    assert (await client.delete(f"/v1/memories/{hard['id']}", params={"hard": "true"}, headers=h)).status_code == 204
    assert (await client.get(f"/v1/memories/{hard['id']}/revisions", headers=h)).status_code == 404
    assert (await client.get(f"/v1/memories/{hard['id']}", headers=h)).status_code == 404


async def test_idempotency_key_creates_once(client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = {**tenant.headers, "Idempotency-Key": "create-1"}
    body = {"scope": USER, "fact": "I speak French.", "topic": "USER_PERSONAL_INFO"}
    first = await client.post("/v1/memories", json=body, headers=h)
    second = await client.post("/v1/memories", json=body, headers=h)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert len(await _list(client, tenant)) == 1
    reused = await client.post("/v1/memories", json={**body, "fact": "I speak German."}, headers=h)
    assert _field_errors(reused) == ["header.Idempotency-Key"]


async def test_list_filters_and_cursor_pagination(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for i in range(5):
        await _create(client, tenant, f"I visited city number {i}.", topic="KEY_CONVERSATION_DETAILS",
                      event_time=f"202{i}-01-01T00:00:00Z")
    await _create(client, tenant, "I prefer aisle seats.", scope={"user_id": "u2"})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"scope": json.dumps(USER), "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/memories", params=params, headers=tenant.headers)).json()
        seen += [m["fact"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"I visited city number {i}." for i in reversed(range(5))]
    recent = await _list(client, tenant, scope=json.dumps(USER), event_time_after="2023-01-01T00:00:00Z")
    assert len(recent) == 2
    assert await _list(client, tenant, topic="USER_PREFERENCES") != []
    bad_scope = await client.get("/v1/memories", params={"scope": "user_id=u1"}, headers=tenant.headers)
    assert _field_errors(bad_scope) == ["query.scope"]
    bad_cursor = await client.get("/v1/memories", params={"cursor": "nope"}, headers=tenant.headers)
    assert _field_errors(bad_cursor) == ["query.cursor"]


# -- import / export ---------------------------------------------------------------------------------------


async def test_import_export_round_trip(client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime) -> None:
    lines = [
        {"scope": USER, "fact": "I am allergic to peanuts.", "topic": "USER_PERSONAL_INFO", "confidence": 0.9,
         "event_time": "2023-05-01T10:00:00Z", "metadata": {"source": "crm"}},
        {"scope": USER, "fact": "Always answer in Spanish.", "topic": "EXPLICIT_INSTRUCTIONS"},
        {"scope": {"user_id": "u2"}, "fact": "I prefer window seats.", "topic": "USER_PREFERENCES"},
    ]
    body = "\n".join(json.dumps(line) for line in lines) + "\n\n"
    response = await client.post("/v1/memories:import", content=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 3
    items = await _list(client, tenant, scope=json.dumps(USER))
    assert {m["source_type"] for m in items} == {"imported"}

    export = await client.get("/v1/memories:export", headers=tenant.headers)
    assert export.headers["content-type"].startswith("application/x-ndjson")
    exported = [json.loads(line) for line in export.text.splitlines()]
    assert len(exported) == 3
    scoped = await client.get("/v1/memories:export", params={"scope": json.dumps(USER)}, headers=tenant.headers)
    assert len(scoped.text.splitlines()) == 2

    other = await new_tenant(runtime)
    again = await client.post("/v1/memories:import", content=export.text, headers=other.headers)
    assert again.status_code == 200, again.text
    copied = [json.loads(line) for line in (await client.get("/v1/memories:export", headers=other.headers)).text
              .splitlines()]

    def key(m: dict[str, Any]) -> tuple[Any, ...]:
        # An import keeps when a memory was first known: its event_time, else its created_at.
        when = datetime.fromisoformat(m["event_time"] or m["created_at"])
        return (json.dumps(m["scope"], sort_keys=True), m["fact"], m["topic"], m["confidence"], when,
                json.dumps(m["metadata"], sort_keys=True))

    assert sorted(map(key, copied)) == sorted(map(key, exported))
    assert {m["id"] for m in copied}.isdisjoint({m["id"] for m in exported})


async def test_import_is_all_or_nothing_with_errors_per_line(client: httpx.AsyncClient, tenant: Tenant) -> None:
    lines = [
        json.dumps({"scope": USER, "fact": "I like hiking.", "topic": "USER_PREFERENCES"}),
        "{not json",
        json.dumps({"scope": USER, "fact": "x" * 2001, "topic": "USER_PREFERENCES"}),
        json.dumps({"scope": USER, "fact": "I like chess.", "topic": "HOBBIES"}),
        json.dumps({"scope": {"team": "t1"}, "fact": "I like go.", "topic": "USER_PREFERENCES"}),
        json.dumps({"scope": USER, "fact": "I like golf.", "topic": "USER_PREFERENCES", "confidence": 2}),
    ]
    response = await client.post("/v1/memories:import", content="\n".join(lines), headers=tenant.headers)
    fields = _field_errors(response)
    assert fields == ["line 2: line", "line 3: fact", "line 4: topic", "line 5: scope", "line 6: confidence"]
    assert await _list(client, tenant) == []
    empty = await client.post("/v1/memories:import", content="\n\n", headers=tenant.headers)
    assert _field_errors(empty) == ["body"]


# -- concurrency ---------------------------------------------------------------------------------------------


async def test_fifty_concurrent_patches_over_http_number_revisions_without_gaps(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    memory = await _create(client, tenant, "I have visited 0 countries.", topic="USER_PERSONAL_INFO")
    statuses: list[int] = []

    async def patch(i: int) -> None:
        response = await client.patch(
            f"/v1/memories/{memory['id']}", json={"confidence": round(i / 100, 2)}, headers=tenant.headers
        )
        statuses.append(response.status_code)

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(patch, i)
    assert statuses == [200] * 50
    revisions = (await client.get(f"/v1/memories/{memory['id']}/revisions", headers=tenant.headers)).json()["items"]
    assert [r["revision_number"] for r in revisions] == list(range(1, 52))
    assert [r["valid_to"] is None for r in revisions] == [False] * 50 + [True]
    final = (await client.get(f"/v1/memories/{memory['id']}", headers=tenant.headers)).json()
    assert final["revision"] == 51 and final["revision_count"] == 50
