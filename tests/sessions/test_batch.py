"""Group commit on PostgreSQL: batched appends stay independent of each other."""

from __future__ import annotations

from uuid import UUID

import anyio
import pytest

from contextiq.core.errors import NotFound
from contextiq.runtime import Runtime
from contextiq.sessions.models import EventCreate, SessionCreate
from tests.conftest import new_tenant


def _event(text: str) -> EventCreate:
    return EventCreate.model_validate({"author": "user", "invocation_id": "i", "content": {"text": text}})


async def test_a_replayed_key_or_a_missing_session_in_a_batch_fails_no_other_append(runtime: Runtime) -> None:
    tenant = await new_tenant(runtime)
    sessions = [
        await runtime.sessions.create_session(tenant_id=tenant.id, data=SessionCreate(user_id=f"u{i}"))
        for i in range(12)
    ]
    first = await runtime.sessions.append_event(
        tenant_id=tenant.id, session_id=sessions[0].id, data=_event("once"), idempotency_key="k-1"
    )
    results: dict[str, object] = {}

    async def replay() -> None:
        results["replay"] = await runtime.sessions.append_event(
            tenant_id=tenant.id, session_id=sessions[0].id, data=_event("once"), idempotency_key="k-1"
        )

    async def missing() -> None:
        with pytest.raises(NotFound):
            await runtime.sessions.append_event(
                tenant_id=tenant.id, session_id=UUID(int=1), data=_event("nobody")
            )
        results["missing"] = True

    async def normal(i: int) -> None:
        results[f"s{i}"] = await runtime.sessions.append_event(
            tenant_id=tenant.id, session_id=sessions[i].id, data=_event(f"e{i}")
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(replay)
        tg.start_soon(missing)
        for i in range(2, 12):
            tg.start_soon(normal, i)

    assert results["replay"].id == first.id  # type: ignore[attr-defined]
    assert results["missing"] is True
    for i in range(2, 12):
        got = await runtime.sessions.get_session(tenant_id=tenant.id, session_id=sessions[i].id, num_recent_events=5)
        assert got.event_count == 1 and got.events is not None and got.events[0].content == {"text": f"e{i}"}
    s0 = await runtime.sessions.get_session(tenant_id=tenant.id, session_id=sessions[0].id)
    assert s0.event_count == 1
