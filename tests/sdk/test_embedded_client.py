"""AsyncEmbeddedClient: the service layer in-process, on SQLite and PostgreSQL, behaving like the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from contextiq.api import create_app
from contextiq.core.config import Settings
from contextiq.core.errors import Forbidden, Invalid, NotFound, Unauthorized
from contextiq.runtime import Runtime
from contextiq.sdk import ApiError, AsyncClient, AsyncEmbeddedClient
from tests.conftest import Tenant, make_settings, new_tenant


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
async def embedded(settings: Settings, tenant: Tenant) -> AsyncIterator[AsyncEmbeddedClient]:
    async with AsyncEmbeddedClient(settings, tenant_id=tenant.id) as client:
        yield client


async def test_create_append_get_round_trip(embedded: AsyncEmbeddedClient, tenant: Tenant) -> None:
    assert embedded.tenant_id == tenant.id
    session = await embedded.sessions.create("u1", agent_id="helper", state={"step": 1}, metadata={"m": 1})
    event = await embedded.sessions.append_event(
        session.id, author="user", invocation_id="inv-1", text="hello",
        actions={"state_delta": {"step": 2}}, if_match=session.etag,
    )
    assert (event.sequence, event.content) == (1, {"parts": [{"text": "hello"}]})
    got = await embedded.sessions.get(session.id, num_recent_events=5)
    assert got.state == {"step": 2}
    assert (got.version, got.event_count, got.metadata) == (2, 1, {"m": 1})
    assert [e.id for e in got.events or []] == [event.id]
    assert [e.id async for e in embedded.sessions.iter_events(session.id)] == [event.id]
    assert (await embedded.organization.get()).id == tenant.id
    assert (await embedded.health())["status"] == "ok"


async def test_state_prefixes_share_app_and_user_state_and_drop_temp(embedded: AsyncEmbeddedClient) -> None:
    agent = f"agent-{uuid4().hex[:8]}"
    first = await embedded.sessions.create("ada", agent_id=agent, state={"app:theme": "dark", "temp:t": 1})
    await embedded.sessions.append_event(
        first.id, author="agent", invocation_id="i1", text="noted",
        actions={"state_delta": {"user:lang": "fr", "temp:scratch": "x", "local": True}},
    )
    same_user = await embedded.sessions.create("ada", agent_id=agent)
    other_user = await embedded.sessions.create("bob", agent_id=agent)
    assert same_user.state == {"app:theme": "dark", "user:lang": "fr"}
    assert other_user.state == {"app:theme": "dark"}
    own = await embedded.sessions.get(first.id)
    assert own.state == {"app:theme": "dark", "user:lang": "fr", "local": True}
    stored = (await embedded.sessions.list_events(first.id)).items[0]
    assert stored.actions is not None
    assert stored.actions.state_delta == {"user:lang": "fr", "local": True}
    cleared = await embedded.sessions.update(same_user.id, state={"user:lang": None})
    assert cleared.state == {"app:theme": "dark"}


async def test_tenant_isolation_between_two_tenant_ids(settings: Settings, runtime: Runtime) -> None:
    a, b = await new_tenant(runtime), await new_tenant(runtime)
    async with AsyncEmbeddedClient(settings, tenant_id=a.id) as ours, AsyncEmbeddedClient(
        settings, tenant_id=str(b.id)
    ) as theirs:
        mine = await ours.sessions.create("same-user")
        foreign = await theirs.sessions.create("same-user")
        assert [s.id for s in (await ours.sessions.list(user_id="same-user")).items] == [mine.id]
        assert [s.id async for s in theirs.sessions.iter(user_id="same-user")] == [foreign.id]
        with pytest.raises(NotFound):
            await ours.sessions.get(foreign.id)
        with pytest.raises(NotFound):
            await ours.sessions.append_event(foreign.id, author="user", invocation_id="i", text="x")
        with pytest.raises(NotFound):
            await ours.sessions.list_events(foreign.id)
        with pytest.raises(NotFound):
            await ours.sessions.update(foreign.id, metadata={"x": 1})
        with pytest.raises(NotFound):
            await ours.sessions.delete(foreign.id)
        assert (await theirs.sessions.get(foreign.id)).id == foreign.id


async def test_api_key_picks_the_tenant_and_its_scopes_are_checked(
    settings: Settings, tenant: Tenant
) -> None:
    # No auth cache: each client has its own in-process cache, so the reader would see the
    # revocation only when its cached principal expires (as a second server process without Redis).
    uncached = settings.model_copy(update={"auth_cache_ttl_seconds": 0})
    async with AsyncEmbeddedClient(settings, api_key=tenant.key) as admin:
        assert admin.tenant_id == tenant.id
        reader_key = await admin.api_keys.create(name="reader", scopes=["sessions:read"])
        session = await admin.sessions.create("u1")
        async with AsyncEmbeddedClient(uncached, api_key=reader_key.key) as reader:
            assert (await reader.sessions.get(session.id)).id == session.id
            with pytest.raises(Forbidden) as denied:
                await reader.sessions.create("u1")
            assert isinstance(denied.value, ApiError)
            assert denied.value.status == 403
            assert denied.value.problem["instance"] == "/v1/sessions"
            with pytest.raises(Forbidden):
                await reader.api_keys.list()
            await admin.api_keys.revoke(reader_key.id)
            with pytest.raises(Unauthorized):
                await reader.sessions.get(session.id)


async def test_errors_match_the_http_api(settings: Settings, runtime: Runtime, tenant: Tenant) -> None:
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    six = {f"k{i}": "v" for i in range(6)}
    absent = uuid4()
    async with AsyncEmbeddedClient(settings, tenant_id=tenant.id) as embedded, AsyncClient(
        "http://contextiq.test", tenant.key, transport=transport
    ) as remote:
        problems = []
        for client in (embedded, remote):
            with pytest.raises(Invalid) as invalid:
                await client.sessions.create("u1", scope=six)
            assert invalid.value.errors[0].field == "body.scope"
            with pytest.raises(NotFound) as missing:
                await client.sessions.get(absent)
            with pytest.raises(Invalid) as limit:
                await client.sessions.list(limit=5000)
            assert limit.value.errors[0].field == "query.limit"
            errors = (invalid.value, missing.value, limit.value)
            assert all(isinstance(e, ApiError) for e in errors)
            problems.append([e.problem for e in errors if isinstance(e, ApiError)])
        assert problems[0] == problems[1]


async def test_unknown_tenant_fails_on_open_and_closed_client_refuses(settings: Settings) -> None:
    client = AsyncEmbeddedClient(settings, tenant_id=uuid4())
    with pytest.raises(NotFound) as caught:
        await client.open()
    assert isinstance(caught.value, ApiError)
    assert caught.value.kind == "organization"
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.sessions.list()
    with pytest.raises(ValueError, match="not both"):
        AsyncEmbeddedClient(settings, api_key="ciq_x_y", tenant_id=uuid4())


async def test_default_settings_migrate_bootstrap_and_use_the_default_org(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DATABASE_URL", "DATA_DIR", "REDIS_URL", "CONFIG_FILE", "AUTO_MIGRATE"):
        monkeypatch.delenv(f"CONTEXTIQ_{name}", raising=False)
    monkeypatch.chdir(tmp_path)
    client = AsyncEmbeddedClient()  # opens lazily, on first use
    session = await client.sessions.create("u1")
    org = await client.organization.get()
    await client.aclose()
    assert org.slug == "default"
    assert (tmp_path / ".contextiq" / "contextiq.db").is_file()
    admin_key = (tmp_path / ".contextiq" / "admin.key").read_text().strip()
    async with AsyncEmbeddedClient(api_key=admin_key) as again:
        assert again.tenant_id == org.id
        assert (await again.sessions.get(session.id)).id == session.id
