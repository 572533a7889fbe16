"""Health, readiness, metrics and OpenAPI are served without a key."""

from __future__ import annotations

import httpx

from tests.conftest import Tenant


async def test_metrics_record_latency_by_route_and_status(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await client.get("/v1/sessions", headers=tenant.headers)
    await client.get("/v1/sessions/00000000-0000-0000-0000-000000000000", headers=tenant.headers)
    text = (await client.get("/metrics")).text
    assert 'route="/v1/sessions",status="200"' in text
    assert 'route="/v1/sessions/{session_id}",status="404"' in text
    assert "contextiq_db_pool_size" in text
    assert "contextiq_db_pool_idle_lent" in text


async def test_readyz_and_openapi(client: httpx.AsyncClient) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "cache": "ok"}
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/sessions/{session_id}/events" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
