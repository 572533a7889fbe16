"""AsyncClient through the real app (SQLite and PostgreSQL), and its retries against small ASGI stubs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from uuid import uuid4

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contextiq.api import create_app
from contextiq.core.errors import (
    ContextIQError,
    Forbidden,
    Invalid,
    NotFound,
    PreconditionFailed,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from contextiq.runtime import Runtime
from contextiq.sdk import ApiConnectionError, ApiError, AsyncClient
from contextiq.sdk.backends import http as http_backend
from contextiq.sessions.models import EventActions
from tests.conftest import Tenant, new_tenant

BASE = "http://contextiq.test"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the SDK's backoff pauses instead of sleeping."""
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(http_backend, "_sleep", record)
    return delays


def _sdk(runtime: Runtime, tenant: Tenant, app: ASGIApp | None = None) -> AsyncClient:
    asgi = app or create_app(runtime=runtime)
    return AsyncClient(BASE, tenant.key, transport=httpx.ASGITransport(app=asgi))


@pytest.fixture
async def sdk(runtime: Runtime, tenant: Tenant) -> AsyncIterator[AsyncClient]:
    async with _sdk(runtime, tenant) as client:
        yield client


# -- the real app -----------------------------------------------------------------------------------


async def test_create_append_get_round_trip(sdk: AsyncClient) -> None:
    session = await sdk.sessions.create(
        "u1", agent_id="helper", scope={"team": "a"}, state={"step": 1, "user:lang": "fr", "temp:x": 1},
        metadata={"source": "test"},
    )
    assert session.state == {"step": 1, "user:lang": "fr"}
    assert (session.version, session.event_count, session.scope) == (1, 0, {"team": "a"})

    event = await sdk.sessions.append_event(
        session.id, author="user", invocation_id="inv-1", text="hello",
        actions={"state_delta": {"step": 2, "temp:scratch": "once"}},
    )
    assert event.sequence == 1
    assert event.content == {"parts": [{"text": "hello"}]}
    second = await sdk.sessions.append_event(
        str(session.id), author="agent", invocation_id="inv-1", content={"parts": [{"text": "hi"}]},
        actions=EventActions(state_delta={"user:lang": None}), if_match=session.version + 1,
    )
    assert second.sequence == 2

    got = await sdk.sessions.get(session.id, num_recent_events=10)
    assert got.state == {"step": 2}
    assert got.version == 3
    assert [e.sequence for e in got.events or []] == [1, 2]
    page = await sdk.sessions.list_events(session.id, author="agent")
    assert [e.id for e in page.items] == [second.id]
    newest_first = sdk.sessions.iter_events(session.id, ascending=False, page_size=1)
    assert [e.sequence async for e in newest_first] == [2, 1]


async def test_list_and_iter_page_through_every_session(sdk: AsyncClient) -> None:
    user = f"pager-{uuid4().hex[:8]}"
    created = [await sdk.sessions.create(user) for _ in range(5)]
    first = await sdk.sessions.list(user_id=user, limit=2)
    assert len(first.items) == 2
    assert first.next_cursor is not None
    second = await sdk.sessions.list(user_id=user, limit=2, cursor=first.next_cursor)
    assert {s.id for s in first.items}.isdisjoint({s.id for s in second.items})
    every = [s.id async for s in sdk.sessions.iter(user_id=user, page_size=2)]
    assert every == [s.id for s in reversed(created)]


async def test_update_merges_state_and_refuses_a_stale_version(sdk: AsyncClient) -> None:
    session = await sdk.sessions.create("u1", state={"a": 1, "b": 2})
    updated = await sdk.sessions.update(
        session.id, if_match=session.etag, state={"a": None, "c": 3}, is_active=False
    )
    assert updated.state == {"b": 2, "c": 3}
    assert updated.is_active is False
    with pytest.raises(PreconditionFailed) as caught:
        await sdk.sessions.update(session.id, if_match=session.version, metadata={"late": True})
    assert caught.value.status == 412
    assert isinstance(caught.value, ApiError)
    assert caught.value.problem["type"] == "urn:contextiq:problem:precondition-failed"


async def test_delete_then_get_is_not_found(sdk: AsyncClient) -> None:
    session = await sdk.sessions.create("u1")
    await sdk.sessions.delete(session.id)
    with pytest.raises(NotFound):
        await sdk.sessions.get(session.id)
    with pytest.raises(NotFound):
        await sdk.sessions.delete(session.id)


async def test_get_session_of_other_tenant_is_not_found(sdk: AsyncClient, runtime: Runtime) -> None:
    other = await new_tenant(runtime)
    async with _sdk(runtime, other) as theirs:
        foreign = await theirs.sessions.create("u1")
    with pytest.raises(NotFound) as caught:
        await sdk.sessions.get(foreign.id)
    error = caught.value
    assert isinstance(error, ApiError)
    assert error.status == 404
    assert error.kind == "session"
    assert str(foreign.id) in error.detail
    assert error.problem["status"] == 404
    assert error.problem["instance"] == f"/v1/sessions/{foreign.id}"
    with pytest.raises(NotFound):
        await sdk.sessions.append_event(foreign.id, author="user", invocation_id="i", text="sneaky")


async def test_six_key_scope_is_invalid_naming_body_scope(sdk: AsyncClient) -> None:
    with pytest.raises(Invalid) as caught:
        await sdk.sessions.create("u1", scope={f"k{i}": "v" for i in range(6)})
    error = caught.value
    assert isinstance(error, ApiError)
    assert error.status == 422
    assert error.errors[0].field == "body.scope"
    assert "at most 5 keys" in error.errors[0].message
    assert error.problem["errors"][0]["field"] == "body.scope"


async def test_bad_path_id_and_etag_are_invalid_before_any_request(sdk: AsyncClient) -> None:
    with pytest.raises(Invalid) as bad_id:
        await sdk.sessions.get("not-a-uuid")
    assert bad_id.value.errors[0].field == "path.session_id"
    with pytest.raises(Invalid) as bad_etag:
        await sdk.sessions.update(uuid4(), if_match="v3", state={})
    assert bad_etag.value.errors[0].field == "header.If-Match"


async def test_idempotency_key_returns_the_first_session(sdk: AsyncClient) -> None:
    key = f"create-{uuid4()}"
    first = await sdk.sessions.create("u1", idempotency_key=key)
    again = await sdk.sessions.create("u1", idempotency_key=key)
    assert again.id == first.id


async def test_api_keys_scopes_and_revocation(sdk: AsyncClient, runtime: Runtime, tenant: Tenant) -> None:
    org = await sdk.organization.get()
    assert org.id == tenant.id
    created = await sdk.api_keys.create(name="reader", scopes=["sessions:read"])
    assert created.key.startswith("ciq_")
    assert created.id in {k.id for k in (await sdk.api_keys.list()).items}

    async with _sdk(runtime, Tenant(id=tenant.id, key=created.key)) as reader:
        assert (await reader.sessions.list()).items is not None
        with pytest.raises(Forbidden) as denied:
            await reader.sessions.create("u1")
        assert denied.value.status == 403
        revoked = await sdk.api_keys.revoke(created.id)
        assert revoked.revoked_at is not None
        with pytest.raises(Unauthorized):
            await reader.sessions.list()


async def test_health(sdk: AsyncClient) -> None:
    assert (await sdk.health())["status"] == "ok"


async def test_lost_answer_is_retried_without_a_second_session(
    runtime: Runtime, tenant: Tenant, sleeps: list[float]
) -> None:
    """The first create is committed but its answer is lost (503): the retry replays it, same key."""
    app = create_app(runtime=runtime)
    keys: list[str] = []

    async def lose_first_answer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            keys.append(dict(scope["headers"]).get(b"idempotency-key", b"").decode())
            if len(keys) == 1:

                async def discard(message: Message) -> None:
                    return None

                await app(scope, receive, discard)
                await _answer(send, 503, {"title": "Service unavailable", "status": 503, "detail": "lost"})
                return
        await app(scope, receive, send)

    user = f"retry-{uuid4().hex[:8]}"
    async with _sdk(runtime, tenant, lose_first_answer) as client:
        session = await client.sessions.create(user)
        page = await client.sessions.list(user_id=user)
    assert [s.id for s in page.items] == [session.id]
    assert len(keys) == 2
    assert keys[0] and keys[0] == keys[1]
    assert len(sleeps) == 1


# -- stubs speaking the API's protocol ------------------------------------------------------------------


async def _answer(send: Send, status: int, body: object, headers: dict[str, str] | None = None) -> None:
    raw = [(b"content-type", b"application/problem+json" if status >= 400 else b"application/json")]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def _session_json(user_id: str) -> dict[str, object]:
    now = datetime.now(UTC).isoformat()
    return {
        "id": str(uuid4()), "user_id": user_id, "agent_id": None, "scope": {}, "state": {}, "metadata": {},
        "created_at": now, "updated_at": now, "expires_at": None, "is_active": True,
        "parent_session_id": None, "version": 1, "event_count": 0,
    }


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Stub:
    """A tiny ContextIQ: refuses the first requests as told, then creates sessions (idempotently)."""

    refusals: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    sessions: dict[str, dict[str, object]] = field(default_factory=dict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append(Seen(scope["method"], scope["path"], headers))
        if self.refusals:
            status, extra = self.refusals.pop(0)
            await _answer(send, status, {"title": "refused", "status": status, "detail": "try later"}, extra)
            return
        if scope["method"] == "POST" and scope["path"] == "/v1/sessions":
            key = headers["idempotency-key"]
            if key not in self.sessions:
                self.sessions[key] = _session_json(json.loads(body)["user_id"])
            await _answer(send, 201, self.sessions[key])
            return
        await _answer(send, 200, {"status": "ok", "version": "stub"})


def _stub_client(stub: Stub | httpx.AsyncBaseTransport, *, max_retries: int = 3) -> AsyncClient:
    transport = stub if isinstance(stub, httpx.AsyncBaseTransport) else httpx.ASGITransport(app=stub)
    return AsyncClient(BASE, "ciq_stub_key", max_retries=max_retries, transport=transport)


async def test_429_is_retried_with_the_same_idempotency_key(sleeps: list[float]) -> None:
    stub = Stub(refusals=[(429, {"Retry-After": "0"})])
    async with _stub_client(stub) as client:
        session = await client.sessions.create("u1")
    assert len(stub.sessions) == 1
    assert str(session.id) == next(iter(stub.sessions.values()))["id"]
    keys = [r.headers["idempotency-key"] for r in stub.requests]
    assert len(keys) == 2
    assert keys[0] == keys[1]
    assert sleeps == [0.0]
    assert stub.requests[0].headers["authorization"] == "Bearer ciq_stub_key"


async def test_retry_after_is_honoured_and_capped(sleeps: list[float]) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    stub = Stub(refusals=[(429, {"Retry-After": "2"}), (503, {"Retry-After": later}), (503, {})])
    async with _stub_client(stub) as client:
        assert (await client.health())["status"] == "ok"
    assert sleeps[:2] == [2.0, http_backend.RETRY_AFTER_MAX]
    assert 0 < sleeps[2] <= http_backend.BACKOFF_INITIAL * 4


async def test_retries_stop_after_max_retries(sleeps: list[float]) -> None:
    stub = Stub(refusals=[(429, {"Retry-After": "7"})] * 3)
    async with _stub_client(stub, max_retries=2) as client:
        with pytest.raises(RateLimited) as caught:
            await client.sessions.list()
    assert caught.value.retry_after == 7
    assert caught.value.status == 429
    assert len(stub.requests) == 3
    assert len(sleeps) == 2


async def test_503_is_not_retried_for_a_request_without_idempotency(sleeps: list[float]) -> None:
    stub = Stub(refusals=[(503, {}), (503, {})])
    async with _stub_client(stub) as client:
        with pytest.raises(Unavailable):
            await client.api_keys.create(name="once")
    assert len(stub.requests) == 1
    assert sleeps == []


class Flaky(httpx.AsyncBaseTransport):
    """Fails the first `failures` requests with `error`, then hands the rest to a stub."""

    def __init__(self, stub: Stub, error: Callable[[httpx.Request], Exception], failures: int) -> None:
        self._inner = httpx.ASGITransport(app=stub)
        self._error = error
        self.failures = failures
        self.attempts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self._error(request)
        return await self._inner.handle_async_request(request)


async def test_connection_errors_are_retried_for_idempotent_requests(sleeps: list[float]) -> None:
    flaky = Flaky(Stub(), lambda r: httpx.ReadError("reset", request=r), failures=2)
    async with _stub_client(flaky) as client:
        session = await client.sessions.create("u1")
    assert session.user_id == "u1"
    assert flaky.attempts == 3
    assert len(sleeps) == 2


async def test_a_request_that_may_have_arrived_is_not_resent_unless_idempotent(sleeps: list[float]) -> None:
    flaky = Flaky(Stub(), lambda r: httpx.ReadTimeout("slow", request=r), failures=1)
    async with _stub_client(flaky) as client:
        with pytest.raises(ApiConnectionError) as caught:
            await client.sessions.update(uuid4(), state={"a": 1})
    assert isinstance(caught.value, Unavailable)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert flaky.attempts == 1
    unsent = Flaky(Stub(), lambda r: httpx.ConnectError("refused", request=r), failures=1)
    async with _stub_client(unsent) as client:
        assert (await client.health())["status"] == "ok"
    assert unsent.attempts == 2


async def test_an_answer_that_is_not_a_problem_is_still_an_api_error() -> None:
    async def proxy(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/html")]
        await send({"type": "http.response.start", "status": 502, "headers": headers})
        await send({"type": "http.response.body", "body": b"<h1>Bad gateway</h1>"})

    async with AsyncClient(BASE, "k", transport=httpx.ASGITransport(app=proxy)) as client:
        with pytest.raises(ApiError) as caught:
            await client.health()
    assert caught.value.status == 502
    assert "Bad gateway" in caught.value.detail
    assert isinstance(caught.value, ContextIQError)


def test_backoff_grows_and_is_capped() -> None:
    for attempt in range(10):
        delay = http_backend.backoff_delay(attempt)
        ceiling = min(http_backend.BACKOFF_MAX, http_backend.BACKOFF_INITIAL * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert http_backend.retry_after_delay("100000") == http_backend.RETRY_AFTER_MAX
    assert http_backend.retry_after_delay(None) is None
    assert http_backend.retry_after_delay("soon") is None


async def test_api_key_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTEXTIQ_API_KEY", "ciq_from_env")
    stub = Stub()
    async with _stub_client(stub) as explicit:
        await explicit.health()
    async with AsyncClient(BASE, transport=httpx.ASGITransport(app=stub)) as client:
        await client.health()
    assert stub.requests[-1].headers["authorization"] == "Bearer ciq_from_env"

