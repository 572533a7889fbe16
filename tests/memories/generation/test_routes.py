"""The generation API over HTTP: validation, jobs endpoints, cancel, idempotency keys, tenant isolation."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from contextiq.runtime import Runtime
from tests.conftest import Tenant, new_tenant

SCOPE = {"user_id": "u1"}


def facts_body(*facts: str, wait: bool = False, **extra: Any) -> dict[str, Any]:
    return {"scope": SCOPE, "source_type": "facts", "facts": list(facts),
            "config": {"wait_for_completion": wait}, **extra}


async def job_count(client: httpx.AsyncClient, tenant: Tenant) -> int:
    response = await client.get("/v1/jobs", headers=tenant.headers, params={"limit": 1000})
    assert response.status_code == 200
    return len(response.json()["items"])


def problem_fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in response.json()["errors"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": SCOPE, "source_type": "emails", "facts": ["x"]}, "body.source_type"),
        (facts_body("x" * 2001), "body.facts.0"),
        (facts_body("ok", "y" * 2001), "body.facts.1"),
        ({**facts_body("x"), "scope": {f"k{i}": "v" for i in range(6)}}, "body.scope"),
        ({**facts_body("x"), "scope": {"agent": "a"}}, "body.scope"),  # the bank requires user_id
        ({"scope": SCOPE, "source_type": "session"}, "body.source_reference"),
        ({"scope": SCOPE, "source_type": "session", "source_reference": "not-a-uuid"}, "body.source_reference"),
        ({"scope": SCOPE, "source_type": "session", "source_reference": str(uuid.uuid4())}, "body.source_reference"),
        ({"scope": SCOPE, "source_type": "events"}, "body.events"),
        ({"scope": SCOPE, "source_type": "events", "events": []}, "body.events"),
        ({"scope": SCOPE, "source_type": "events", "events": [{"author": "user"}]}, "body.events.0"),
        ({"scope": SCOPE, "source_type": "events", "events": [{"author": "robot", "text": "hi"}]},
         "body.events.0.author"),
        ({"scope": SCOPE, "source_type": "events",
          "events": [{"id": "a", "author": "user", "text": "x"}, {"id": "a", "author": "user", "text": "y"}]},
         "body.events.1.id"),
        ({"scope": SCOPE, "source_type": "facts", "facts": ["x"], "events": [{"author": "user", "text": "y"}]},
         "body.events"),
        (facts_body("x", config={"topics": ["NOT_A_TOPIC"]}), "body.config.topics"),
        (facts_body("x", config={"extraction_model": "gpt-4o"}), "body.config.extraction_model"),
        (facts_body("x", config={"embedding_model": "text-embedding-3-large"}), "body.config.embedding_model"),
        (facts_body("x", config={"surprise": True}), "body.config.surprise"),
        (facts_body("x", bank_id=str(uuid.uuid4())), "body.bank_id"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_stores_no_job(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/memories:generate", json=body, headers=tenant.headers)
    assert field in problem_fields(response)
    assert await job_count(client, tenant) == 0


async def test_session_of_another_tenant_is_an_unknown_session(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant
) -> None:
    other = await new_tenant(runtime)
    created = await client.post("/v1/sessions", json={"user_id": "u1"}, headers=other.headers)
    assert created.status_code == 201
    body = {"scope": SCOPE, "source_type": "session", "source_reference": created.json()["id"]}
    response = await client.post("/v1/memories:generate", json=body, headers=tenant.headers)
    assert problem_fields(response) == ["body.source_reference"]
    assert "not found" in response.json()["detail"]


async def test_generate_without_waiting_answers_202_with_a_pending_job(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post("/v1/memories:generate", json=facts_body("I like tea."), headers=tenant.headers)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "pending" and job["progress"] == 0 and job["kind"] == "memories.generate"
    assert job["source_type"] == "facts" and job["source_reference"] == "1 facts" and job["scope"] == SCOPE
    assert job["result"] is None and job["max_attempts"] >= 1
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    fetched = await client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers)
    assert fetched.status_code == 200 and fetched.json()["id"] == job["id"]
    events = await client.get(f"/v1/jobs/{job['id']}/events", headers=tenant.headers)
    assert events.status_code == 200 and events.json() == {"items": [], "next_cursor": None}


async def test_cancel_a_pending_job(client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant) -> None:
    job = (await client.post("/v1/memories:generate", json=facts_body("I like tea."), headers=tenant.headers)).json()
    cancelled = await client.post(f"/v1/jobs/{job['id']}:cancel", headers=tenant.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["completed_at"] is not None
    again = await client.post(f"/v1/jobs/{job['id']}:cancel", headers=tenant.headers)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    # No worker will run it.
    assert await runtime.build_worker().run_job(uuid.UUID(job["id"])) is False
    listed = await client.get("/v1/jobs", params={"status": "cancelled"}, headers=tenant.headers)
    assert [j["id"] for j in listed.json()["items"]] == [job["id"]]


async def test_list_jobs_pages_newest_first_and_filters_by_status(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ids = []
    for i in range(5):
        r = await client.post("/v1/memories:generate", json=facts_body(f"Fact {i}."), headers=tenant.headers)
        ids.append(r.json()["id"])
    await client.post(f"/v1/jobs/{ids[0]}:cancel", headers=tenant.headers)
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/jobs", params=params, headers=tenant.headers)).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    pending = (await client.get("/v1/jobs", params={"status": "pending"}, headers=tenant.headers)).json()
    assert {j["id"] for j in pending["items"]} == set(ids[1:])
    bad = await client.get("/v1/jobs", params={"status": "sleeping"}, headers=tenant.headers)
    assert problem_fields(bad) == ["query.status"]
    bad_cursor = await client.get("/v1/jobs", params={"cursor": "nope"}, headers=tenant.headers)
    assert problem_fields(bad_cursor) == ["query.cursor"]


async def test_jobs_of_another_tenant_are_404(client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant) -> None:
    job = (await client.post("/v1/memories:generate", json=facts_body("I like tea."), headers=tenant.headers)).json()
    other = await new_tenant(runtime)
    for method, path in [
        ("GET", f"/v1/jobs/{job['id']}"),
        ("GET", f"/v1/jobs/{job['id']}/events"),
        ("POST", f"/v1/jobs/{job['id']}:cancel"),
    ]:
        response = await client.request(method, path, headers=other.headers)
        assert response.status_code == 404, (method, path, response.text)
    assert (await client.get("/v1/jobs", headers=other.headers)).json()["items"] == []
    still = await client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers)
    assert still.json()["status"] == "pending"


async def test_scopes_memories_read_and_write(client: httpx.AsyncClient, runtime: Runtime) -> None:
    reader = await new_tenant(runtime, scopes=["memories:read"])
    response = await client.post("/v1/memories:generate", json=facts_body("x"), headers=reader.headers)
    assert response.status_code == 403
    assert (await client.get("/v1/jobs", headers=reader.headers)).status_code == 200
    sessions_only = await new_tenant(runtime, scopes=["sessions:write"])
    assert (await client.get("/v1/jobs", headers=sessions_only.headers)).status_code == 403
    assert (await client.get("/v1/jobs")).status_code == 401


async def test_idempotency_key_returns_the_same_job(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "gen-1"}
    first = await client.post("/v1/memories:generate", json=facts_body("I like tea."), headers=headers)
    second = await client.post("/v1/memories:generate", json=facts_body("I like tea."), headers=headers)
    assert first.json()["id"] == second.json()["id"]
    assert await job_count(client, tenant) == 1
    reused = await client.post("/v1/memories:generate", json=facts_body("I like coffee."), headers=headers)
    assert problem_fields(reused) == ["header.Idempotency-Key"]
