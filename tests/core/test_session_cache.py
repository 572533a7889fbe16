"""Session reads come from the cache (Redis or in-process) and are never stale after a write."""

from __future__ import annotations

from pathlib import Path

import pytest

from contextiq.runtime import Runtime
from contextiq.sessions.models import EventCreate, SessionCreate, SessionUpdate
from tests.conftest import make_settings, new_tenant


async def test_no_stale_read_after_any_write_across_two_processes(
    two_processes: tuple[Runtime, Runtime], cache_url: str | None
) -> None:
    a, b = two_processes  # two server processes sharing the database (and Redis when configured)
    tenant = await new_tenant(a)
    s = await a.sessions.create_session(tenant_id=tenant.id, data=SessionCreate(user_id="u", agent_id="x"))
    await a.sessions.get_session(tenant_id=tenant.id, session_id=s.id)  # warm a's cache
    other = await a.sessions.create_session(tenant_id=tenant.id, data=SessionCreate(user_id="u", agent_id="x"))
    await a.sessions.get_session(tenant_id=tenant.id, session_id=other.id)
    await a.sessions.append_event(
        tenant_id=tenant.id, session_id=s.id,
        data=EventCreate.model_validate({"author": "user", "invocation_id": "i", "content": {},
                                         "actions": {"state_delta": {"k": 1, "user:lang": "de"}}}),
    )
    got = await a.sessions.get_session(tenant_id=tenant.id, session_id=s.id)
    assert got.state == {"k": 1, "user:lang": "de"} and got.event_count == 1
    # A user: change made through one session is visible at once through another session of that user.
    assert (await a.sessions.get_session(tenant_id=tenant.id, session_id=other.id)).state == {"user:lang": "de"}
    if cache_url is not None:
        # b shares Redis, so it sees a's write with no database read needed.
        assert (await b.sessions.get_session(tenant_id=tenant.id, session_id=s.id)).version == got.version
        await b.sessions.update_session(tenant_id=tenant.id, session_id=s.id,
                                        data=SessionUpdate(metadata={"by": "b"}))
        assert (await a.sessions.get_session(tenant_id=tenant.id, session_id=s.id)).metadata == {"by": "b"}
    await a.sessions.delete_session(tenant_id=tenant.id, session_id=s.id)
    from contextiq.core.errors import NotFound

    with pytest.raises(NotFound):
        await a.sessions.get_session(tenant_id=tenant.id, session_id=s.id)


async def test_cached_session_of_another_tenant_is_still_404(database_url: str, tmp_path: Path) -> None:
    from contextiq.core.errors import NotFound

    rt = Runtime(make_settings(tmp_path, database_url))
    try:
        owner, stranger = await new_tenant(rt), await new_tenant(rt)
        s = await rt.sessions.create_session(tenant_id=owner.id, data=SessionCreate(user_id="u"))
        await rt.sessions.get_session(tenant_id=owner.id, session_id=s.id)  # now cached
        with pytest.raises(NotFound):
            await rt.sessions.get_session(tenant_id=stranger.id, session_id=s.id)
    finally:
        await rt.aclose()


async def test_recent_events_are_never_stale_across_processes(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    a = Runtime(make_settings(tmp_path, database_url, redis_url))
    b = Runtime(make_settings(tmp_path, database_url, redis_url))
    try:
        tenant = await new_tenant(a)
        s = await a.sessions.create_session(tenant_id=tenant.id, data=SessionCreate(user_id="u"))

        def event(text: str) -> EventCreate:
            return EventCreate.model_validate({"author": "user", "invocation_id": "i", "content": {"text": text}})

        for i in range(3):
            await a.sessions.append_event(tenant_id=tenant.id, session_id=s.id, data=event(f"a{i}"))
        seen = await a.sessions.get_session(tenant_id=tenant.id, session_id=s.id, num_recent_events=10)
        assert [e.content["text"] for e in seen.events or []] == ["a0", "a1", "a2"]
        await b.sessions.append_event(tenant_id=tenant.id, session_id=s.id, data=event("b0"))
        again = await a.sessions.get_session(tenant_id=tenant.id, session_id=s.id, num_recent_events=2)
        assert [e.content["text"] for e in again.events or []] == ["a2", "b0"]
        await a.sessions.append_event(tenant_id=tenant.id, session_id=s.id, data=event("a3"))
        last = await a.sessions.get_session(tenant_id=tenant.id, session_id=s.id, num_recent_events=5)
        assert [e.sequence for e in last.events or []] == [1, 2, 3, 4, 5]
    finally:
        await a.aclose()
        await b.aclose()
