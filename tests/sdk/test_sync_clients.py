"""The synchronous twins: Client against a live uvicorn server, EmbeddedClient on a SQLite file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from contextiq.core.errors import Forbidden, Invalid, NotFound, Unauthorized
from contextiq.sdk import Client, EmbeddedClient
from contextiq.sdk.backends import http as http_backend
from contextiq.sessions.models import Session
from tests.sdk.conftest import LiveServer, sqlite_settings


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[Client]:
    with Client(live_server.base_url, live_server.admin_key) as sync:
        yield sync


def test_round_trip_against_a_live_server(client: Client) -> None:
    assert client.health()["status"] == "ok"
    user = f"live-{uuid4().hex[:8]}"
    session = client.sessions.create(user, agent_id="helper", state={"step": 1, "user:lang": "en"})
    assert isinstance(session, Session)
    event = client.sessions.append_event(
        session.id, author="user", invocation_id="inv-1", text="hello", actions={"state_delta": {"step": 2}}
    )
    assert event.sequence == 1
    got = client.sessions.get(session.id, num_recent_events=1)
    assert got.state == {"step": 2, "user:lang": "en"}
    assert [e.id for e in got.events or []] == [event.id]
    assert [e.id for e in client.sessions.list_events(session.id).items] == [event.id]
    more = [client.sessions.create(user) for _ in range(2)]
    newest_first = [m.id for m in reversed(more)] + [session.id]
    assert [s.id for s in client.sessions.iter(user_id=user, page_size=1)] == newest_first
    updated = client.sessions.update(session.id, if_match=got.etag, is_active=False)
    assert updated.is_active is False
    client.sessions.delete(session.id)
    with pytest.raises(NotFound):
        client.sessions.get(session.id)
    assert client.organization.get().slug == "default"


def test_errors_and_keys_against_a_live_server(client: Client, live_server: LiveServer) -> None:
    with pytest.raises(Invalid) as invalid:
        client.sessions.create("u1", scope={f"k{i}": "v" for i in range(6)})
    assert invalid.value.errors[0].field == "body.scope"
    reader = client.api_keys.create(name="reader", scopes=["sessions:read"])
    with Client(live_server.base_url, reader.key) as limited:
        assert limited.sessions.list(limit=1).items is not None
        with pytest.raises(Forbidden):
            limited.sessions.create("u1")
    with Client(live_server.base_url, "ciq_nothing_here") as stranger, pytest.raises(Unauthorized):
        stranger.sessions.list()


def test_iterating_partly_then_stopping_closes_the_pager(client: Client) -> None:
    user = f"partial-{uuid4().hex[:8]}"
    for _ in range(3):
        client.sessions.create(user)
    pager = client.sessions.iter(user_id=user, page_size=1)
    first = next(pager)
    pager.close()  # runs the async generator's cleanup on the client's loop
    assert first.user_id == user


async def test_a_sync_client_works_inside_a_running_event_loop(live_server: LiveServer) -> None:
    with Client(live_server.base_url, live_server.admin_key) as sync:
        assert sync.health()["status"] == "ok"


def test_close_is_idempotent_and_a_closed_client_refuses(live_server: LiveServer) -> None:
    client = Client(live_server.base_url, live_server.admin_key)
    client.close()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.health()
    assert not [t for t in threading.enumerate() if t.name == "contextiq-client"]


def test_sync_retry_through_a_mock_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(http_backend, "_sleep", record)
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) == 1:
            problem = {"status": 429, "detail": "slow down"}
            return httpx.Response(429, headers={"Retry-After": "0"}, json=problem)
        now = "2030-01-01T00:00:00Z"
        return httpx.Response(201, json={
            "id": str(uuid4()), "user_id": "u1", "agent_id": None, "scope": {}, "state": {}, "metadata": {},
            "created_at": now, "updated_at": now, "expires_at": None, "is_active": True,
            "parent_session_id": None, "version": 1, "event_count": 0,
        })

    with Client("http://stub.test", "ciq_k", transport=httpx.MockTransport(handler)) as client:
        assert client.sessions.create("u1").user_id == "u1"
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert delays == [0.0]


def test_embedded_client_round_trip_and_api_key(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path)
    with EmbeddedClient(settings) as embedded:
        session = embedded.sessions.create("u1", state={"app:mode": "test"})
        embedded.sessions.append_event(session.id, author="user", invocation_id="i", text="hi")
        assert embedded.sessions.get(session.id).event_count == 1
        assert [s.id for s in embedded.sessions.iter()] == [session.id]
        reader = embedded.api_keys.create(name="reader", scopes=["sessions:read"])
        tenant = embedded.tenant_id
    admin_key = (tmp_path / "admin.key").read_text().strip()
    with EmbeddedClient(settings, api_key=admin_key) as admin:
        assert admin.tenant_id == tenant
        assert admin.sessions.get(session.id).state == {"app:mode": "test"}
    with EmbeddedClient(settings, api_key=reader.key) as limited:
        assert limited.sessions.get(session.id).id == session.id
        with pytest.raises(Forbidden):
            limited.sessions.delete(session.id)
    with pytest.raises(Unauthorized):
        EmbeddedClient(settings, api_key="ciq_unknown0_secret")
    with pytest.raises(NotFound):
        EmbeddedClient(settings, tenant_id=uuid4())
