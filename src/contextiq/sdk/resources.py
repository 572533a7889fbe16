"""The resource namespaces of the async clients (`client.sessions`, `.api_keys`, `.organization`).

They hold everything the two kinds of client share: the public signatures, argument conveniences
(`text=` for content, `EventActions` or a dict, an ETag or a version for `if_match`), request bodies
in their wire form, filters, and pagination. A `Backend` does the rest, over HTTP or in-process.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict, TypeVar
from uuid import UUID

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from typing_extensions import Unpack

from contextiq.core.errors import FieldError
from contextiq.core.types import JSON
from contextiq.platform.models import ApiKey, ApiKeyCreated, ApiKeyPage, Organization
from contextiq.platform.models import Scope as KeyScope
from contextiq.sdk.backends.base import Backend
from contextiq.sdk.errors import invalid, invalid_from_validation
from contextiq.sessions.models import (
    Author,
    Event,
    EventActions,
    EventFilter,
    EventPage,
    Session,
    SessionFilter,
    SessionPage,
)

F = TypeVar("F", bound=BaseModel)


class SessionFields(TypedDict, total=False):
    """What `sessions.update()` may change; an omitted field stays as it is (a PATCH)."""

    agent_id: str | None
    scope: Mapping[str, str]
    state: Mapping[str, object]
    """Merged like a state delta: `None` deletes a key; `app:`/`user:` keys are shared, `temp:` dropped."""
    metadata: Mapping[str, object]
    expires_at: datetime | None
    is_active: bool


def _json(value: object) -> Any:
    """Return `value` as JSON-ready data (datetimes and UUIDs as strings, mappings as dicts)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    return to_jsonable_python(value)


def _body(**fields: object) -> JSON:
    """Return a request body of the fields that were given (None means "not given" here)."""
    return {name: _json(value) for name, value in fields.items() if value is not None}


def _uuid(value: UUID | str, *, field: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        error = FieldError(field, f"Input should be a valid UUID, got {value!r}")
        raise invalid([error], instance=None) from None


def _version(if_match: int | str | None) -> int | None:
    """Return the session version named by `if_match`: a version (`3`) or an ETag (`'"3"'`, `'W/"3"'`)."""
    if if_match is None:
        return None
    if isinstance(if_match, int) and not isinstance(if_match, bool):
        return if_match
    raw = str(if_match).strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise invalid(
            [FieldError("header.If-Match", f'expected an ETag like "3", got {if_match!r}')], instance=None
        )
    return int(raw)


def _filters(model: type[F], **values: object) -> F:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise invalid_from_validation(exc, where="query", instance=None) from None


def _content(content: Mapping[str, object] | None, text: str | None) -> JSON:
    if text is not None and content is None:
        return {"parts": [{"text": text}]}
    if content is not None and text is None:
        result: JSON = _json(content)
        return result
    raise TypeError("append_event() takes exactly one of content= (a JSON object) or text= (a string)")


class AsyncSessions:
    """Sessions and their events: `client.sessions`."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def create(
        self,
        user_id: str,
        *,
        agent_id: str | None = None,
        scope: Mapping[str, str] | None = None,
        state: Mapping[str, object] | None = None,
        metadata: Mapping[str, object] | None = None,
        expires_at: datetime | None = None,
        parent_session_id: UUID | str | None = None,
        idempotency_key: str | None = None,
    ) -> Session:
        """Create a session; `state` may carry `app:` and `user:` keys, shared with other sessions.

        Args:
            idempotency_key: makes retries safe: a repeated key returns the first session. Over
                HTTP one is generated when not given, so the SDK's own retries never create twice.
        """
        body = _body(
            user_id=user_id, agent_id=agent_id, scope=scope, state=state, metadata=metadata,
            expires_at=expires_at, parent_session_id=parent_session_id,
        )
        return await self._backend.create_session(body=body, idempotency_key=idempotency_key)

    async def get(self, session_id: UUID | str, *, num_recent_events: int | None = None) -> Session:
        """Return a session with its merged state and, if `num_recent_events` is given, its newest events."""
        return await self._backend.get_session(
            session_id=_uuid(session_id, field="path.session_id"), num_recent_events=num_recent_events
        )

    async def list(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        is_active: bool | None = None,
        parent_session_id: UUID | str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> SessionPage:
        """Return one page of sessions, newest first; pass `next_cursor` back as `cursor` for the next."""
        filters = _filters(
            SessionFilter, user_id=user_id, agent_id=agent_id, is_active=is_active,
            parent_session_id=parent_session_id, created_after=created_after, created_before=created_before,
        )
        return await self._backend.list_sessions(filters=filters, cursor=cursor, limit=limit)

    async def iter(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        is_active: bool | None = None,
        parent_session_id: UUID | str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[Session]:
        """Yield every matching session, newest first, fetching `page_size` at a time."""
        cursor: str | None = None
        while True:
            page = await self.list(
                user_id=user_id, agent_id=agent_id, is_active=is_active, parent_session_id=parent_session_id,
                created_after=created_after, created_before=created_before, cursor=cursor, limit=page_size,
            )
            for session in page.items:
                yield session
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def update(
        self, session_id: UUID | str, *, if_match: int | str | None = None, **fields: Unpack[SessionFields]
    ) -> Session:
        """Change the given fields; `state` is merged like a delta (None deletes a key).

        Args:
            if_match: the version (`session.version`) or ETag (`session.etag`) this update is based
                on; a stale one raises `PreconditionFailed` (412) instead of overwriting.
        """
        return await self._backend.update_session(
            session_id=_uuid(session_id, field="path.session_id"), body=_json(fields),
            if_match=_version(if_match),
        )

    async def delete(self, session_id: UUID | str) -> None:
        """Delete a session, its events and its child sessions."""
        await self._backend.delete_session(session_id=_uuid(session_id, field="path.session_id"))

    async def append_event(
        self,
        session_id: UUID | str,
        *,
        author: Author,
        invocation_id: str,
        content: Mapping[str, object] | None = None,
        text: str | None = None,
        actions: EventActions | Mapping[str, object] | None = None,
        metadata: Mapping[str, object] | None = None,
        timestamp: datetime | None = None,
        if_match: int | str | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        """Append an event; its `actions.state_delta` is applied to the session in the same transaction.

        Args:
            content: the event's content, a JSON object (ADK: `{"parts": [{"text": …}]}`).
            text: instead of `content`, a plain text: `{"parts": [{"text": text}]}`.
            actions: an `EventActions` or its dict (`{"state_delta": {"user:name": "Ada"}}`).
            if_match: a version or ETag; a stale one raises `PreconditionFailed` (412).
            idempotency_key: a repeated key returns the first event (generated over HTTP if not given).
        """
        body = _body(
            author=author, invocation_id=invocation_id, content=_content(content, text), actions=actions,
            metadata=metadata, timestamp=timestamp,
        )
        return await self._backend.append_event(
            session_id=_uuid(session_id, field="path.session_id"), body=body, if_match=_version(if_match),
            idempotency_key=idempotency_key,
        )

    async def list_events(
        self,
        session_id: UUID | str,
        *,
        after: datetime | None = None,
        before: datetime | None = None,
        author: Author | None = None,
        invocation_id: str | None = None,
        ascending: bool = True,
        cursor: str | None = None,
        limit: int = 100,
    ) -> EventPage:
        """Return one page of a session's events in sequence order (oldest first unless `ascending=False`)."""
        filters = _filters(
            EventFilter, after=after, before=before, author=author, invocation_id=invocation_id,
            ascending=ascending,
        )
        return await self._backend.list_events(
            session_id=_uuid(session_id, field="path.session_id"), filters=filters, cursor=cursor, limit=limit
        )

    async def iter_events(
        self,
        session_id: UUID | str,
        *,
        after: datetime | None = None,
        before: datetime | None = None,
        author: Author | None = None,
        invocation_id: str | None = None,
        ascending: bool = True,
        page_size: int = 100,
    ) -> AsyncIterator[Event]:
        """Yield every matching event of a session, fetching `page_size` at a time."""
        cursor: str | None = None
        while True:
            page = await self.list_events(
                session_id, after=after, before=before, author=author, invocation_id=invocation_id,
                ascending=ascending, cursor=cursor, limit=page_size,
            )
            for event in page.items:
                yield event
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


class AsyncApiKeys:
    """The tenant's API keys: `client.api_keys` (needs the `keys:read`/`keys:write` scopes)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def create(
        self,
        *,
        name: str = "default",
        scopes: Sequence[KeyScope] | None = None,
        rate_limit: int | None = None,
        expires_at: datetime | None = None,
    ) -> ApiKeyCreated:
        """Create an API key (default scopes: `admin`); `.key` holds the secret, shown this once only."""
        body = _body(
            name=name, scopes=builtins.list(scopes) if scopes is not None else None, rate_limit=rate_limit,
            expires_at=expires_at,
        )
        return await self._backend.create_api_key(body=body)

    async def list(self) -> ApiKeyPage:
        """Return the tenant's API keys, without their secrets."""
        return await self._backend.list_api_keys()

    async def revoke(self, key_id: UUID | str) -> ApiKey:
        """Revoke a key at once: requests made with it fail with `Unauthorized` from now on."""
        return await self._backend.revoke_api_key(key_id=_uuid(key_id, field="path.key_id"))


class AsyncOrganization:
    """The caller's organization, i.e. the tenant: `client.organization`."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def get(self) -> Organization:
        """Return the organization the API key (or embedded tenant) belongs to."""
        return await self._backend.get_organization()
