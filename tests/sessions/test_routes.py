"""Sessions and events over HTTP through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

from uuid import uuid4

import anyio
import httpx
import pytest

from contextiq.runtime import Runtime
from tests.conftest import Tenant, new_tenant


async def _session(client: httpx.AsyncClient, tenant: Tenant, **body: object) -> dict[str, object]:
    response = await client.post("/v1/sessions", json={"user_id": "u1", "agent_id": "helper", **body},
                                 headers=tenant.headers)
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()
    return data


def _event(text: str = "hello", **extra: object) -> dict[str, object]:
    return {"author": "user", "invocation_id": "inv-1", "content": {"parts": [{"text": text}]}, **extra}


async def test_create_append_and_read_back_merged_state(client: httpx.AsyncClient, tenant: Tenant) -> None:
    session = await _session(client, tenant, state={"step": 1, "app:theme": "dark", "user:lang": "fr", "temp:x": 1})
    assert session["state"] == {"step": 1, "app:theme": "dark", "user:lang": "fr"}
    sid = session["id"]
    delta = {"step": 2, "temp:scratch": "seen once", "user:lang": None, "app:version": 3}
    response = await client.post(f"/v1/sessions/{sid}/events", json=_event(actions={"state_delta": delta}),
                                 headers=tenant.headers)
    assert response.status_code == 201
    event = response.json()
    assert event["sequence"] == 1
    assert event["actions"]["state_delta"]["temp:scratch"] == "seen once"  # returned, never stored
    got = await client.get(f"/v1/sessions/{sid}", params={"num_recent_events": 10}, headers=tenant.headers)
    body = got.json()
    assert body["state"] == {"step": 2, "app:theme": "dark", "app:version": 3}
    assert got.headers["etag"] == '"2"'
    assert [e["sequence"] for e in body["events"]] == [1]
    assert "temp:scratch" not in body["events"][0]["actions"]["state_delta"]


async def test_app_and_user_state_are_shared_across_sessions(client: httpx.AsyncClient, tenant: Tenant) -> None:
    first = await _session(client, tenant)
    await client.post(f"/v1/sessions/{first['id']}/events",
                      json=_event(actions={"state_delta": {"app:motd": "hi", "user:name": "Ana", "own": 1}}),
                      headers=tenant.headers)
    same_user = await _session(client, tenant)
    other_user = await _session(client, tenant, user_id="u2")
    other_agent = await _session(client, tenant, agent_id="other")
    assert same_user["state"] == {"app:motd": "hi", "user:name": "Ana"}
    assert other_user["state"] == {"app:motd": "hi"}
    assert other_agent["state"] == {}


async def test_every_session_endpoint_hides_other_tenants(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    session = await _session(client, tenant)
    sid = session["id"]
    other = await new_tenant(runtime)
    h = other.headers
    assert (await client.get(f"/v1/sessions/{sid}", headers=h)).status_code == 404
    assert (await client.patch(f"/v1/sessions/{sid}", json={"metadata": {"x": 1}}, headers=h)).status_code == 404
    assert (await client.post(f"/v1/sessions/{sid}/events", json=_event(), headers=h)).status_code == 404
    assert (await client.get(f"/v1/sessions/{sid}/events", headers=h)).status_code == 404
    assert (await client.delete(f"/v1/sessions/{sid}", headers=h)).status_code == 404
    assert (await client.get("/v1/sessions", headers=h)).json()["items"] == []
    child = await client.post("/v1/sessions", json={"user_id": "u", "parent_session_id": sid}, headers=h)
    assert child.status_code == 422
    assert child.json()["errors"][0]["field"] == "body.parent_session_id"
    # and the owner still sees it untouched
    mine = await client.get(f"/v1/sessions/{sid}", headers=tenant.headers)
    assert mine.status_code == 200 and mine.json()["metadata"] == {}


async def test_200_concurrent_appends_get_gapless_sequences_and_lose_no_state(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    session = await _session(client, tenant)
    sid = session["id"]

    async def append(i: int) -> None:
        delta: dict[str, object] = {f"k{i}": i}
        if i % 2 == 0:
            delta[f"user:seen_{i}"] = True
            delta["user:counter_owner"] = i
        response = await client.post(f"/v1/sessions/{sid}/events", json=_event(f"m{i}", actions={"state_delta": delta}),
                                     headers=tenant.headers)
        assert response.status_code == 201, response.text

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(append, i)

    events = (await client.get(f"/v1/sessions/{sid}/events", params={"limit": 1000}, headers=tenant.headers)).json()
    assert sorted(e["sequence"] for e in events["items"]) == list(range(1, 201))
    state = (await client.get(f"/v1/sessions/{sid}", headers=tenant.headers)).json()["state"]
    for i in range(200):
        assert state[f"k{i}"] == i
        if i % 2 == 0:
            assert state[f"user:seen_{i}"] is True
    assert state["user:counter_owner"] in range(0, 200, 2)


async def test_idempotent_retry_returns_first_result_and_stores_once(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": f"create-{uuid4()}"}
    body = {"user_id": "u-idem", "agent_id": "a"}
    first = await client.post("/v1/sessions", json=body, headers=headers)
    again = await client.post("/v1/sessions", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    listed = (await client.get("/v1/sessions", params={"user_id": "u-idem"}, headers=tenant.headers)).json()
    assert len(listed["items"]) == 1

    sid = first.json()["id"]
    ev_headers = {**tenant.headers, "Idempotency-Key": f"append-{uuid4()}"}
    e1 = await client.post(f"/v1/sessions/{sid}/events", json=_event(), headers=ev_headers)
    e2 = await client.post(f"/v1/sessions/{sid}/events", json=_event(), headers=ev_headers)
    assert e1.json()["id"] == e2.json()["id"]
    events = (await client.get(f"/v1/sessions/{sid}/events", headers=tenant.headers)).json()["items"]
    assert len(events) == 1

    reused = await client.post(f"/v1/sessions/{sid}/events", json=_event("different"), headers=ev_headers)
    assert reused.status_code == 422
    assert reused.json()["errors"][0]["field"] == "header.Idempotency-Key"


async def test_concurrent_retries_with_one_key_create_one_session(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = {**tenant.headers, "Idempotency-Key": f"race-{uuid4()}"}
    ids: list[str] = []

    async def create() -> None:
        response = await client.post("/v1/sessions", json={"user_id": "u-race"}, headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(create)
    assert len(set(ids)) == 1
    listed = (await client.get("/v1/sessions", params={"user_id": "u-race"}, headers=tenant.headers)).json()
    assert len(listed["items"]) == 1


async def test_if_match_with_stale_etag_is_412_and_changes_nothing(client: httpx.AsyncClient, tenant: Tenant) -> None:
    session = await _session(client, tenant)
    sid = session["id"]
    ok = await client.post(f"/v1/sessions/{sid}/events", json=_event(actions={"state_delta": {"a": 1}}),
                           headers={**tenant.headers, "If-Match": '"1"'})
    assert ok.status_code == 201
    stale = await client.post(f"/v1/sessions/{sid}/events", json=_event(actions={"state_delta": {"a": 2}}),
                              headers={**tenant.headers, "If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    patch = await client.patch(f"/v1/sessions/{sid}", json={"metadata": {"m": 1}},
                               headers={**tenant.headers, "If-Match": '"1"'})
    assert patch.status_code == 412
    current = await client.get(f"/v1/sessions/{sid}", headers=tenant.headers)
    assert current.json()["state"] == {"a": 1} and current.json()["metadata"] == {}
    fresh = await client.patch(f"/v1/sessions/{sid}", json={"metadata": {"m": 1}},
                               headers={**tenant.headers, "If-Match": current.headers["etag"]})
    assert fresh.status_code == 200 and fresh.headers["etag"] == '"3"'
    bad = await client.patch(f"/v1/sessions/{sid}", json={}, headers={**tenant.headers, "If-Match": "nope"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "header.If-Match"


@pytest.mark.parametrize(
    ("path_kind", "body", "field"),
    [
        ("create", {"user_id": "u", "scope": {f"k{i}": "v" for i in range(6)}}, "body.scope"),
        ("create", {"user_id": ""}, "body.user_id"),
        ("create", {"user_id": "u", "surprise": 1}, "body.surprise"),
        ("event", {"author": "robot", "invocation_id": "i", "content": {}}, "body.author"),
        ("event", {"author": "user", "content": {}}, "body.invocation_id"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant, path_kind: str, body: dict[str, object], field: str
) -> None:
    session = await _session(client, tenant, user_id="u-bad")
    path = "/v1/sessions" if path_kind == "create" else f"/v1/sessions/{session['id']}/events"
    response = await client.post(path, json=body, headers=tenant.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]
    sessions = (await client.get("/v1/sessions", headers=tenant.headers)).json()["items"]
    assert len(sessions) == 1
    events = (await client.get(f"/v1/sessions/{session['id']}/events", headers=tenant.headers)).json()["items"]
    assert events == []


async def test_malformed_json_and_negative_num_recent_events_are_422(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    malformed = await client.post("/v1/sessions", content=b'{"user_id": ',
                                  headers={**tenant.headers, "content-type": "application/json"})
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "body"
    assert (await client.get("/v1/sessions", headers=tenant.headers)).json()["items"] == []
    session = await _session(client, tenant)
    negative = await client.get(f"/v1/sessions/{session['id']}", params={"num_recent_events": -1},
                                headers=tenant.headers)
    assert negative.status_code == 422
    assert negative.json()["errors"][0]["field"] == "query.num_recent_events"


async def test_expired_session_rejects_appends_with_409(client: httpx.AsyncClient, tenant: Tenant,
                                                        runtime: Runtime) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from contextiq.sessions.tables import SessionRow

    session = await _session(client, tenant, expires_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    sid = session["id"]
    # Move the expiry into the past directly in the database (no sleeping).
    async with runtime.db.write() as db:
        await db.execute(update(SessionRow).where(SessionRow.tenant_id == tenant.id)
                         .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    response = await client.post(f"/v1/sessions/{sid}/events", json=_event(), headers=tenant.headers)
    assert response.status_code == 409
    assert "expired" in response.json()["detail"]
    await runtime.sessions.expire_sessions()
    got = await client.get(f"/v1/sessions/{sid}", headers=tenant.headers)
    assert got.json()["is_active"] is False
    past = await client.post("/v1/sessions", json={"user_id": "u", "expires_at": "2000-01-01T00:00:00Z"},
                             headers=tenant.headers)
    assert past.status_code == 422 and past.json()["errors"][0]["field"] == "body.expires_at"


async def test_deleting_a_parent_deletes_its_children(client: httpx.AsyncClient, tenant: Tenant) -> None:
    parent = await _session(client, tenant)
    child = await _session(client, tenant, parent_session_id=parent["id"])
    grandchild = await _session(client, tenant, parent_session_id=child["id"])
    await client.post(f"/v1/sessions/{grandchild['id']}/events", json=_event(), headers=tenant.headers)
    listed = await client.get("/v1/sessions", params={"parent_session_id": parent["id"]}, headers=tenant.headers)
    assert [s["id"] for s in listed.json()["items"]] == [child["id"]]
    assert (await client.get(f"/v1/sessions/{grandchild['id']}", headers=tenant.headers)).status_code == 200
    assert (await client.delete(f"/v1/sessions/{parent['id']}", headers=tenant.headers)).status_code == 204
    for sid in (parent["id"], child["id"], grandchild["id"]):
        assert (await client.get(f"/v1/sessions/{sid}", headers=tenant.headers)).status_code == 404


async def test_list_filters_and_cursor_pagination(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = [await _session(client, tenant, user_id=f"user-{i % 2}") for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 3, "user_id": "user-0"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/sessions", params=params, headers=tenant.headers)).json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    expected = [s["id"] for s in created if s["user_id"] == "user-0"]
    assert seen == list(reversed(expected))
    bad = await client.get("/v1/sessions", params={"cursor": "garbage!"}, headers=tenant.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.cursor"


async def test_events_filters_order_and_past_timestamps(client: httpx.AsyncClient, tenant: Tenant) -> None:
    session = await _session(client, tenant)
    sid = session["id"]
    old = {"timestamp": "2023-05-01T10:00:00Z"}
    await client.post(f"/v1/sessions/{sid}/events", json=_event("old", **old), headers=tenant.headers)
    await client.post(f"/v1/sessions/{sid}/events", json={**_event("agent"), "author": "agent",
                      "invocation_id": "inv-2"}, headers=tenant.headers)
    await client.post(f"/v1/sessions/{sid}/events", json=_event("new"), headers=tenant.headers)
    url = f"/v1/sessions/{sid}/events"
    desc = (await client.get(url, params={"ascending": False}, headers=tenant.headers)).json()["items"]
    assert [e["sequence"] for e in desc] == [3, 2, 1]
    assert desc[2]["timestamp"].startswith("2023-05-01T10:00:00")
    by_author = (await client.get(url, params={"author": "agent"}, headers=tenant.headers)).json()["items"]
    assert [e["invocation_id"] for e in by_author] == ["inv-2"]
    by_inv = (await client.get(url, params={"invocation_id": "inv-1"}, headers=tenant.headers)).json()["items"]
    assert len(by_inv) == 2
    recent = (await client.get(url, params={"after": "2024-01-01T00:00:00Z"}, headers=tenant.headers)).json()["items"]
    assert [e["sequence"] for e in recent] == [2, 3]
    page = (await client.get(url, params={"limit": 2}, headers=tenant.headers)).json()
    rest = (await client.get(url, params={"cursor": page["next_cursor"]}, headers=tenant.headers)).json()
    assert [e["sequence"] for e in page["items"] + rest["items"]] == [1, 2, 3]


async def test_patch_merges_state_and_rejects_null_for_required_fields(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    session = await _session(client, tenant, state={"a": 1, "b": 2})
    sid = session["id"]
    patched = await client.patch(f"/v1/sessions/{sid}", json={"state": {"b": None, "c": 3, "user:x": 1}},
                                 headers=tenant.headers)
    assert patched.status_code == 200
    assert patched.json()["state"] == {"a": 1, "c": 3, "user:x": 1}
    null = await client.patch(f"/v1/sessions/{sid}", json={"scope": None}, headers=tenant.headers)
    assert null.status_code == 422 and null.json()["errors"][0]["field"] == "body.scope"
    inactive = await client.patch(f"/v1/sessions/{sid}", json={"is_active": False}, headers=tenant.headers)
    assert inactive.json()["is_active"] is False
    refused = await client.post(f"/v1/sessions/{sid}/events", json=_event(), headers=tenant.headers)
    assert refused.status_code == 409
