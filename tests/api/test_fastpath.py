"""`RetrieveFastPath` answers `POST /v1/memories:retrieve` exactly as the FastAPI route does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import contextiq.api.fastpath as fastpath
from contextiq.api.app import create_app
from contextiq.memories.models import MemoryBankCreate, MemoryCreate
from contextiq.platform.models import ApiKeyCreate
from contextiq.runtime import Runtime
from tests.conftest import Tenant, new_tenant

RETRIEVE = "/v1/memories:retrieve"
# Headers that may differ between two requests answered a moment apart.
MOVING = {"x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"}


@pytest.fixture
async def clients(runtime: Runtime) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The app with the fast path, and the same app without it, over one runtime."""
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=runtime)), base_url="http://t") as fast,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(runtime=runtime, fast_retrieve=False)), base_url="http://t"
        ) as plain,
    ):
        yield fast, plain


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The requests the fast path answered itself (it calls `authorize` only for those)."""
    calls: list[str] = []
    authorize = fastpath.authorize

    async def counting(runtime: Runtime, authorization: str | None, scope: str) -> Any:
        calls.append(scope)
        return await authorize(runtime, authorization, scope)

    monkeypatch.setattr(fastpath, "authorize", counting)
    return calls


async def _memories(runtime: Runtime, tenant: Tenant) -> None:
    for fact in ("I am allergic to peanuts.", "I fly to Lisbon in May.", "My dog is called Rex.",
                 "I prefer window seats.", "Rex needs a walk at 7."):
        await runtime.memories.create_memory(
            tenant_id=tenant.id, data=MemoryCreate(scope={"user_id": "u1"}, fact=fact, topic="USER_PREFERENCES")
        )


def _same(fast: httpx.Response, plain: httpx.Response) -> None:
    assert fast.status_code == plain.status_code, (fast.text, plain.text)
    assert fast.content == plain.content
    assert {k: v for k, v in fast.headers.items() if k not in MOVING} == {
        k: v for k, v in plain.headers.items() if k not in MOVING
    }
    assert {k for k in fast.headers if k in MOVING} == {k for k in plain.headers if k in MOVING}


async def test_answers_equal_the_routes(
    runtime: Runtime, tenant: Tenant, clients: tuple[httpx.AsyncClient, httpx.AsyncClient], served: list[str]
) -> None:
    await _memories(runtime, tenant)
    fast, plain = clients
    bodies: list[dict[str, Any]] = [
        {"scope": {"user_id": "u1"}, "query": "what is the dog called?"},
        {"scope": {"user_id": "u1"}, "query": "peanuts", "mode": "keyword", "top_k": 2},
        {"scope": {"user_id": "u1"}, "query": "travel plans", "mode": "similarity"},
        {"scope": {"user_id": "u1"}},  # newest first
        {"scope": {"user_id": "u1"}, "query": "rex", "filters": {"topics": ["USER_PREFERENCES"]}, "top_k": 3},
        {"scope": {"user_id": "nobody"}, "query": "anything"},
    ]
    for body in bodies:
        served.clear()
        got, want = await fast.post(RETRIEVE, json=body, headers=tenant.headers), await plain.post(
            RETRIEVE, json=body, headers=tenant.headers
        )
        assert got.status_code == 200 and served == ["memories:read"], body
        _same(got, want)
    assert len((await fast.post(RETRIEVE, json=bodies[0], headers=tenant.headers)).json()["memories"]) == 5
    charset = {**tenant.headers, "Content-Type": "application/json; charset=utf-8"}
    _same(
        await fast.post(RETRIEVE, content=json.dumps(bodies[1]), headers=charset),
        await plain.post(RETRIEVE, content=json.dumps(bodies[1]), headers=charset),
    )
    text = (await fast.get("/metrics")).text
    assert 'route="/v1/memories:retrieve",status="200"' in text  # labelled as the route


async def test_errors_equal_the_routes(
    runtime: Runtime, tenant: Tenant, clients: tuple[httpx.AsyncClient, httpx.AsyncClient], served: list[str]
) -> None:
    fast, plain = clients
    reader = await runtime.platform.create_key(org_id=tenant.id, data=ApiKeyCreate(scopes=["sessions:read"]))
    bank = await runtime.memories.create_bank(
        tenant_id=tenant.id, data=MemoryBankCreate(name="keyed", scope_keys=["user_id"])
    )
    ok = {"scope": {"user_id": "u1"}, "query": "dog"}
    cases: list[tuple[str, dict[str, str], Any, bool]] = [  # (what, headers, body, answered by the fast path)
        ("no key", {}, ok, True),
        ("not a bearer key", {"Authorization": "Basic abc"}, ok, True),
        ("unknown key", {"Authorization": "Bearer ciq_abcdefgh_nothing"}, ok, True),
        ("key without memories:read", {"Authorization": f"Bearer {reader.key}"}, ok, True),
        ("unknown bank", tenant.headers, {**ok, "bank_id": "00000000-0000-0000-0000-000000000001"}, True),
        ("scope key the bank does not have", tenant.headers, {**ok, "bank_id": str(bank.id), "scope": {"x": "1"}},
         True),
        ("top_k 0", tenant.headers, {**ok, "top_k": 0}, False),
        ("bad mode", tenant.headers, {**ok, "mode": "magic"}, False),
        ("no scope", tenant.headers, {"query": "dog"}, False),
        ("not an object", tenant.headers, [1, 2], False),
        ("bad key and bad body", {}, {**ok, "top_k": 0}, False),  # the app: 401 before the body
    ]
    for what, headers, body, answered in cases:
        served.clear()
        got, want = await fast.post(RETRIEVE, json=body, headers=headers), await plain.post(
            RETRIEVE, json=body, headers=headers
        )
        assert got.status_code >= 400 and got.headers["content-type"] == "application/problem+json", what
        assert bool(served) == answered, what
        _same(got, want)
    for raw, kind in ((b'{"scope": {"user_id": "u1"}, "query": ', "application/json"), (b"query=dog", "text/plain")):
        headers = {**tenant.headers, "Content-Type": kind}
        _same(await fast.post(RETRIEVE, content=raw, headers=headers),
              await plain.post(RETRIEVE, content=raw, headers=headers))
    big = {**ok, "query": "x" * (fastpath.MAX_BODY + 10)}  # read, then handed to the app whole
    _same(await fast.post(RETRIEVE, json=big, headers=tenant.headers),
          await plain.post(RETRIEVE, json=big, headers=tenant.headers))


async def test_a_spent_rate_limit_is_refused_once_counted(
    runtime: Runtime, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    fast, plain = clients
    tenant = await new_tenant(runtime)
    answers = {}
    for name, client in (("fast", fast), ("plain", plain)):
        key = await runtime.platform.create_key(org_id=tenant.id, data=ApiKeyCreate(rate_limit=2))
        headers = {"Authorization": f"Bearer {key.key}"}
        body = {"scope": {"user_id": "u1"}, "query": "dog"}
        answers[name] = [await client.post(RETRIEVE, json=body, headers=headers) for _ in range(3)]
    assert [r.status_code for r in answers["fast"]] == [200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in answers["fast"][:2]] == ["1", "0"]
    for got, want in zip(answers["fast"], answers["plain"], strict=True):
        _same(got, want)


async def _asgi(app: Any, chunks: list[bytes], headers: dict[str, str], *, leave: bool = False) -> list[Any]:
    """POST `chunks` (one ASGI message each) to the app directly; `leave`: the client disconnects
    after them. Returns the messages sent back."""
    incoming: list[Any] = [
        {"type": "http.request", "body": c, "more_body": k < len(chunks) - 1 or leave} for k, c in enumerate(chunks)
    ]
    if leave:
        incoming.append({"type": "http.disconnect"})
    sent: list[Any] = []

    async def receive() -> Any:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": RETRIEVE, "raw_path": RETRIEVE.encode(), "query_string": b"", "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1), "server": ("t", 80), "state": {},
    }
    await app(scope, receive, send)
    return sent


async def test_a_body_in_several_messages_is_read_whole_and_a_delegated_request_counted_once(
    runtime: Runtime, tenant: Tenant, served: list[str]
) -> None:
    await _memories(runtime, tenant)
    fast, plain = create_app(runtime=runtime), create_app(runtime=runtime, fast_retrieve=False)
    headers = {**tenant.headers, "Content-Type": "application/json"}
    body = json.dumps({"scope": {"user_id": "u1"}, "query": "what is the dog called?"}).encode()
    parts = [body[:7], body[7:20], body[20:]]
    got, want = await _asgi(fast, parts, headers), await _asgi(plain, parts, headers)
    assert served == ["memories:read"] and got[0]["status"] == want[0]["status"] == 200
    assert got[1]["body"] == want[1]["body"] and json.loads(got[1]["body"])["memories"]
    # A body the model rejects goes to the app, which counts the request once against the limit.
    key = await runtime.platform.create_key(org_id=tenant.id, data=ApiKeyCreate(rate_limit=5))
    limited = {"Authorization": f"Bearer {key.key}", "Content-Type": "application/json"}
    bad = json.dumps({"scope": {"user_id": "u1"}, "top_k": 0}).encode()
    remaining = []
    for _ in range(2):
        sent = await _asgi(fast, [bad[:5], bad[5:]], limited)
        assert sent[0]["status"] == 422
        ok = await _asgi(fast, [body], limited)
        remaining.append(dict(ok[0]["headers"])[b"x-ratelimit-remaining"])
    assert remaining == [b"3", b"1"]
    # A client that leaves before its body ends: the app gets what was read, then the disconnect.
    served.clear()
    left = await _asgi(fast, [body[:10]], headers, leave=True)
    left_plain = await _asgi(plain, [body[:10]], headers, leave=True)
    assert not served and [m.get("status") for m in left] == [m.get("status") for m in left_plain]
