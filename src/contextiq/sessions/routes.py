"""Routes of sessions and events: parse, call one service method, return."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from contextiq.api.deps import IdempotencyKey, IfMatch, RuntimeDep, SessionsRead, SessionsWrite, parse_if_match
from contextiq.sessions.models import (
    Author,
    Event,
    EventCreate,
    EventFilter,
    EventPage,
    Session,
    SessionCreate,
    SessionFilter,
    SessionPage,
    SessionUpdate,
)

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
Limit = Annotated[int, Query(ge=1, le=1000)]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_session(
    body: SessionCreate, tenant: SessionsWrite, runtime: RuntimeDep, response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Session:
    session = await runtime.sessions.create_session(
        tenant_id=tenant.id, data=body, idempotency_key=idempotency_key
    )
    response.headers["ETag"] = session.etag
    response.headers["Location"] = f"/v1/sessions/{session.id}"
    return session


@router.get("")
async def list_sessions(
    tenant: SessionsRead,
    runtime: RuntimeDep,
    user_id: str | None = None,
    agent_id: str | None = None,
    is_active: bool | None = None,
    parent_session_id: UUID | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> SessionPage:
    filters = SessionFilter(
        user_id=user_id, agent_id=agent_id, is_active=is_active, parent_session_id=parent_session_id,
        created_after=created_after, created_before=created_before,
    )
    return await runtime.sessions.list_sessions(tenant_id=tenant.id, filters=filters, cursor=cursor, limit=limit)


@router.get("/{session_id}")
async def get_session(
    session_id: UUID, tenant: SessionsRead, runtime: RuntimeDep, response: Response,
    num_recent_events: Annotated[int | None, Query(ge=0, le=1000)] = None,
) -> Session:
    session = await runtime.sessions.get_session(
        tenant_id=tenant.id, session_id=session_id, num_recent_events=num_recent_events
    )
    response.headers["ETag"] = session.etag
    return session


@router.patch("/{session_id}")
async def update_session(
    session_id: UUID, body: SessionUpdate, tenant: SessionsWrite, runtime: RuntimeDep, response: Response,
    if_match: IfMatch = None,
) -> Session:
    session = await runtime.sessions.update_session(
        tenant_id=tenant.id, session_id=session_id, data=body, if_match=parse_if_match(if_match)
    )
    response.headers["ETag"] = session.etag
    return session


@router.delete("/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_session(session_id: UUID, tenant: SessionsWrite, runtime: RuntimeDep) -> Response:
    await runtime.sessions.delete_session(tenant_id=tenant.id, session_id=session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{session_id}/events", status_code=status.HTTP_201_CREATED)
async def append_event(
    session_id: UUID, body: EventCreate, tenant: SessionsWrite, runtime: RuntimeDep,
    if_match: IfMatch = None, idempotency_key: IdempotencyKey = None,
) -> Event:
    return await runtime.sessions.append_event(
        tenant_id=tenant.id, session_id=session_id, data=body,
        if_match=parse_if_match(if_match), idempotency_key=idempotency_key,
    )


@router.get("/{session_id}/events")
async def list_events(
    session_id: UUID,
    tenant: SessionsRead,
    runtime: RuntimeDep,
    after: datetime | None = None,
    before: datetime | None = None,
    author: Author | None = None,
    invocation_id: str | None = None,
    ascending: bool = True,
    cursor: str | None = None,
    limit: Limit = 100,
) -> EventPage:
    filters = EventFilter(after=after, before=before, author=author, invocation_id=invocation_id, ascending=ascending)
    return await runtime.sessions.list_events(
        tenant_id=tenant.id, session_id=session_id, filters=filters, cursor=cursor, limit=limit
    )
