"""API keys over HTTP: authentication, scopes, revocation, expiry and rate limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

from contextiq.api import create_app
from contextiq.platform.models import ApiKeyCreate
from contextiq.platform.tables import ApiKeyRow
from contextiq.runtime import Runtime
from tests.conftest import Tenant, make_settings, new_tenant


async def test_missing_malformed_and_unknown_keys_are_401(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/sessions")).status_code == 401
    basic = await client.get("/v1/sessions", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401
    bogus = await client.get("/v1/sessions", headers={"Authorization": "Bearer ciq_aaaaaaaa_nope"})
    assert bogus.status_code == 401
    assert bogus.headers["content-type"] == "application/problem+json"


async def test_scopes_gate_endpoints(client: httpx.AsyncClient, runtime: Runtime) -> None:
    reader = await new_tenant(runtime, scopes=["sessions:read"])
    assert (await client.get("/v1/sessions", headers=reader.headers)).status_code == 200
    denied = await client.post("/v1/sessions", json={"user_id": "u"}, headers=reader.headers)
    assert denied.status_code == 403
    assert "sessions:write" in denied.json()["detail"]
    assert (await client.get("/v1/api-keys", headers=reader.headers)).status_code == 403
    writer = await new_tenant(runtime, scopes=["sessions:write"])
    created = await client.post("/v1/sessions", json={"user_id": "u"}, headers=writer.headers)
    assert created.status_code == 201
    assert (await client.get(f"/v1/sessions/{created.json()['id']}", headers=writer.headers)).status_code == 200


async def test_revoked_key_is_401_at_once(client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime) -> None:
    made = await client.post("/v1/api-keys", json={"name": "temp", "scopes": ["sessions:read"]},
                             headers=tenant.headers)
    assert made.status_code == 201
    key = made.json()["key"]
    assert key.startswith("ciq_") and made.json()["prefix"] == key[:12]
    headers = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/v1/sessions", headers=headers)).status_code == 200
    listed = (await client.get("/v1/api-keys", headers=tenant.headers)).json()["items"]
    assert all("key" not in k for k in listed)
    revoked = await client.post(f"/v1/api-keys/{made.json()['id']}:revoke", headers=tenant.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    after = await client.get("/v1/sessions", headers=headers)
    assert after.status_code == 401 and "revoked" in after.json()["detail"]


async def test_expired_key_is_401(client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    made = await runtime.platform.create_key(org_id=tenant.id, data=ApiKeyCreate(expires_at=soon))
    async with runtime.db.write() as db:
        await db.execute(update(ApiKeyRow).where(ApiKeyRow.id == made.id)
                         .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    await runtime.cache.delete(f"apikey:{__import__('contextiq.platform.service', fromlist=['x']).hash_key(made.key)}")
    response = await client.get("/v1/sessions", headers={"Authorization": f"Bearer {made.key}"})
    assert response.status_code == 401 and "expired" in response.json()["detail"]


async def test_stored_key_is_only_prefix_and_hash(tenant: Tenant, runtime: Runtime) -> None:
    from sqlalchemy import select

    async with runtime.db.read() as db:
        rows = (await db.scalars(select(ApiKeyRow).where(ApiKeyRow.organization_id == tenant.id))).all()
    assert rows
    for row in rows:
        assert tenant.key not in (row.key_hash, row.key_prefix)
        assert len(row.key_prefix) == 12 and len(row.key_hash) == 64


async def test_rate_limit_is_429_with_headers(client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime) -> None:
    limited = await runtime.platform.create_key(org_id=tenant.id, data=ApiKeyCreate(rate_limit=3))
    headers = {"Authorization": f"Bearer {limited.key}"}
    seen = [await client.get("/v1/sessions", headers=headers) for _ in range(4)]
    assert [r.status_code for r in seen] == [200, 200, 200, 429]
    assert seen[0].headers["X-RateLimit-Limit"] == "3"
    assert seen[0].headers["X-RateLimit-Remaining"] == "2"
    assert int(seen[3].headers["Retry-After"]) >= 1
    assert seen[3].headers["X-RateLimit-Remaining"] == "0"
    assert int(seen[3].headers["X-RateLimit-Reset"]) > datetime.now(UTC).timestamp() - 1


async def test_rate_limit_in_redis_is_shared_by_two_app_instances(
    database_url: str, redis_url: str, tmp_path: object, tenant: Tenant, runtime: Runtime
) -> None:
    from pathlib import Path

    limited = await runtime.platform.create_key(org_id=tenant.id, data=ApiKeyCreate(rate_limit=4))
    headers = {"Authorization": f"Bearer {limited.key}"}
    codes = []
    runtimes = [Runtime(make_settings(Path(str(tmp_path)), database_url, redis_url)) for _ in range(2)]
    try:
        for i in range(6):
            app = create_app(runtime=runtimes[i % 2])
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
                codes.append((await http.get("/v1/sessions", headers=headers)).status_code)
    finally:
        for rt in runtimes:
            await rt.aclose()
    assert codes == [200, 200, 200, 200, 429, 429]


async def test_first_start_writes_an_admin_key_file_readable_only_by_owner(runtime: Runtime, tmp_path: object) -> None:
    from pathlib import Path

    fresh = Path(str(tmp_path)) / "fresh"
    # The shared test database already has organizations, so bootstrap must do nothing there.
    assert await runtime.platform.bootstrap(fresh) is None
    assert not (fresh / "admin.key").exists()
