"""Session behaviour: create, read with merged state, append events with state deltas, expire.

Cache (seed 000 §6.1): `session:{id}` holds the session's own fields with a 1 h sliding TTL;
`app_state:{tenant}:{agent}` and `user_state:{tenant}:{agent}:{user}` hold the shared state, so a
write to one user's state never leaves another session of that user stale. Every write updates the
entries it changed right after commit, versioned, so a slower writer cannot put back an older value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from contextiq.core.cache.base import Cache
from contextiq.core.clock import as_utc, utcnow
from contextiq.core.db.engine import Database
from contextiq.core.errors import Conflict, Invalid, NotFound, PreconditionFailed
from contextiq.core.idempotency import request_fingerprint, run_idempotent
from contextiq.core.ids import new_id
from contextiq.core.pagination import check_limit, decode_cursor, decode_int_cursor, encode_cursor
from contextiq.core.types import JSON
from contextiq.sessions.batch import AppendBatcher
from contextiq.sessions.models import (
    Event,
    EventActions,
    EventCreate,
    EventFilter,
    EventPage,
    Session,
    SessionCreate,
    SessionFilter,
    SessionPage,
    SessionUpdate,
)
from contextiq.sessions.recent import RecentEvents
from contextiq.sessions.state import SplitDelta, apply_delta, merged_state, split_delta, without_temp
from contextiq.sessions.store import NO_AGENT, SessionStore
from contextiq.sessions.tables import EventRow, SessionRow

SHARED_STATE_TTL = 3600
MAX_RECENT_EVENTS = 1000


@dataclass(slots=True)
class _Written:
    """What a write transaction changed, for the cache update after commit."""

    session: SessionRow | None = None
    app: tuple[str, JSON, int] | None = None
    user: tuple[str, str, JSON, int] | None = None
    event: Event | None = None  # the event as stored (no temp: keys), for the recent-events buffer


def _session_key(session_id: UUID) -> str:
    return f"session:{session_id}"


def _app_key(tenant_id: UUID, agent_id: str) -> str:
    return f"app_state:{tenant_id}:{agent_id}"


def _user_key(tenant_id: UUID, agent_id: str, user_id: str) -> str:
    return f"user_state:{tenant_id}:{agent_id}:{user_id}"


def _row_snapshot(row: SessionRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "tenant_id": str(row.tenant_id),
        "user_id": row.user_id,
        "agent_id": row.agent_id,
        "scope": row.scope,
        "state": row.state,
        "metadata": row.metadata_,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "is_active": row.is_active,
        "parent_session_id": str(row.parent_session_id) if row.parent_session_id else None,
        "version": row.version,
        "event_count": row.last_sequence,
    }


def _event_model(row: EventRow, *, temp: Mapping[str, Any] | None = None) -> Event:
    actions = EventActions.model_validate(row.actions) if row.actions is not None else None
    if temp and actions is not None:
        actions = actions.model_copy(update={"state_delta": {**(actions.state_delta or {}), **temp}})
    return Event(
        id=row.id,
        session_id=row.session_id,
        sequence=row.sequence,
        author=row.author,
        invocation_id=row.invocation_id,
        timestamp=row.timestamp,
        content=row.content,
        actions=actions,
        metadata=row.metadata_,
        created_at=row.created_at,
    )


def _merge_patch(delta: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """Split a delta into the JSON of keys to set and the list of keys to delete (null values)."""
    if not delta:
        return None, []
    return json.dumps({k: v for k, v in delta.items() if v is not None}), [k for k, v in delta.items() if v is None]


def _as_json(value: Any) -> Any:
    """Decode a JSON column value from the driver (a string, or already decoded by a codec)."""
    return json.loads(value) if isinstance(value, str) else value


def _row_from_record(record: Any) -> SessionRow:
    """Build a detached SessionRow from a `RETURNING *` record (for the cache snapshot)."""

    def uuid_or_none(value: Any) -> UUID | None:
        return UUID(str(value)) if value is not None else None

    return SessionRow(
        id=UUID(str(record["id"])),
        tenant_id=UUID(str(record["tenant_id"])),
        user_id=record["user_id"],
        agent_id=record["agent_id"],
        scope=_as_json(record["scope"]),
        state=_as_json(record["state"]),
        metadata_=_as_json(record["metadata"]),
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        expires_at=record["expires_at"],
        is_active=record["is_active"],
        parent_session_id=uuid_or_none(record["parent_session_id"]),
        version=int(record["version"]),
        last_sequence=int(record["last_sequence"]),
    )


def _is_expired(row: SessionRow, now: datetime) -> bool:
    return row.expires_at is not None and row.expires_at <= now


class SessionService:
    """Sessions and events for one deployment; every method is scoped to a tenant."""

    def __init__(self, *, db: Database, cache: Cache, cache_ttl: int = 3600) -> None:
        self._db = db
        self._cache = cache
        self._ttl = cache_ttl
        self._recent = RecentEvents()
        self._batcher = AppendBatcher(db)

    # -- create ---------------------------------------------------------------------------------

    async def create_session(
        self, *, tenant_id: UUID, data: SessionCreate, idempotency_key: str | None = None
    ) -> Session:
        """Create a session; its initial state may carry app: and user: keys like a state delta."""
        now = utcnow()
        if data.expires_at is not None and as_utc(data.expires_at) <= now:
            raise Invalid("body.expires_at", "must be in the future")
        written = _Written()

        async def work(db: AsyncSession) -> Session:
            store = SessionStore(db)
            if data.parent_session_id is not None:
                parent = await store.get(tenant_id=tenant_id, session_id=data.parent_session_id)
                if parent is None:
                    raise Invalid("body.parent_session_id", f"session {data.parent_session_id} not found")
            split = split_delta(data.state)
            row = await store.add(
                SessionRow(
                    tenant_id=tenant_id,
                    user_id=data.user_id,
                    agent_id=data.agent_id,
                    scope=dict(data.scope),
                    state=apply_delta({}, split.session),
                    metadata_=dict(data.metadata),
                    created_at=now,
                    updated_at=now,
                    expires_at=data.expires_at,
                    parent_session_id=data.parent_session_id,
                    version=1,
                    last_sequence=0,
                )
            )
            app, user = await self._apply_shared(store, row, split.app, split.user, written)
            written.session = row
            return self._model(row, app, user)

        payload = data.model_dump(mode="json")
        session, replayed = await run_idempotent(
            self._db,
            tenant_id=tenant_id,
            key=idempotency_key,
            operation="sessions.create",
            payload=payload,
            model=Session,
            work=work,
        )
        if not replayed:
            await self._publish(tenant_id, written)
        return session

    # -- read -----------------------------------------------------------------------------------

    async def get_session(self, *, tenant_id: UUID, session_id: UUID, num_recent_events: int | None = None) -> Session:
        """Return a session with its merged state and, if asked, its newest events."""
        if num_recent_events is not None and not 0 <= num_recent_events <= MAX_RECENT_EVENTS:
            raise Invalid("query.num_recent_events", f"must be between 0 and {MAX_RECENT_EVENTS}")
        snapshot = await self._cached_snapshot(tenant_id, session_id)
        agent = snapshot["agent_id"] or NO_AGENT
        app, user = await self._shared_state(tenant_id, agent, snapshot["user_id"])
        session = Session.model_validate({**snapshot, "state": merged_state(snapshot["state"], app, user)})
        if num_recent_events:
            session.events = await self._recent_events(tenant_id, session_id, session.event_count, num_recent_events)
        elif num_recent_events == 0:
            session.events = []
        return session

    async def _recent_events(self, tenant_id: UUID, session_id: UUID, last_sequence: int, count: int) -> list[Event]:
        cached = self._recent.tail(session_id, last_sequence=last_sequence, count=count)
        if cached is not None:
            return cached
        async with self._db.read() as db:
            rows = await SessionStore(db).recent_events(
                tenant_id=tenant_id, session_id=session_id, limit=max(count, MAX_RECENT_EVENTS)
            )
        events = [_event_model(r) for r in rows]
        self._recent.fill(session_id, events, last_sequence=last_sequence)
        return events[-count:]

    async def list_sessions(
        self, *, tenant_id: UUID, filters: SessionFilter, cursor: str | None = None, limit: int = 50
    ) -> SessionPage:
        """Return one page of sessions, newest first."""
        check_limit(limit)
        after = None
        if cursor:
            created, ident = decode_cursor(cursor, 2)
            try:
                after = (as_utc(datetime.fromisoformat(created)), UUID(ident))
            except ValueError as exc:
                raise Invalid("query.cursor", "not a cursor returned by this API") from exc
        async with self._db.read() as db:
            store = SessionStore(db)
            rows = await store.list_sessions(tenant_id=tenant_id, filters=filters, after=after, limit=limit + 1)
            page = rows[:limit]
            apps, users = await store.shared_states(
                tenant_id=tenant_id, pairs={(r.agent_id or NO_AGENT, r.user_id) for r in page}
            )
            items = [
                self._model(
                    row, apps.get(row.agent_id or NO_AGENT, {}), users.get((row.agent_id or NO_AGENT, row.user_id), {})
                )
                for row in page
            ]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last.created_at.isoformat(), str(last.id))
        return SessionPage(items=items, next_cursor=next_cursor)

    async def list_events(
        self,
        *,
        tenant_id: UUID,
        session_id: UUID,
        filters: EventFilter,
        cursor: str | None = None,
        limit: int = 100,
    ) -> EventPage:
        """Return one page of a session's events in sequence order."""
        check_limit(limit)
        after = decode_int_cursor(cursor)
        async with self._db.read() as db:
            store = SessionStore(db)
            if await store.get(tenant_id=tenant_id, session_id=session_id) is None:
                raise NotFound("session", session_id)
            rows = await store.list_events(
                tenant_id=tenant_id, session_id=session_id, filters=filters, after_sequence=after, limit=limit + 1
            )
        next_cursor = encode_cursor(rows[limit - 1].sequence) if len(rows) > limit else None
        return EventPage(items=[_event_model(r) for r in rows[:limit]], next_cursor=next_cursor)

    # -- write ----------------------------------------------------------------------------------

    async def append_event(
        self,
        *,
        tenant_id: UUID,
        session_id: UUID,
        data: EventCreate,
        if_match: int | None = None,
        idempotency_key: str | None = None,
    ) -> Event:
        """Append an event, applying its state delta in the same transaction; return it."""
        now = utcnow()
        written = _Written()
        delta = (data.actions.state_delta if data.actions else None) or {}
        split = split_delta(delta)

        async def work(db: AsyncSession) -> Event:
            store = SessionStore(db)
            row = await self._locked(store, tenant_id, session_id, if_match)
            if not row.is_active:
                raise Conflict(f"session {session_id} is inactive; it accepts no new events")
            if _is_expired(row, now):
                raise Conflict(f"session {session_id} expired at {row.expires_at:%Y-%m-%dT%H:%M:%SZ}")
            if split.session:
                row.state = apply_delta(row.state, split.session)
            await self._apply_shared(store, row, split.app, split.user, written)
            row.last_sequence += 1
            row.version += 1
            row.updated_at = now
            actions = data.actions.model_dump(mode="json", exclude_none=True) if data.actions else None
            if actions is not None and "state_delta" in actions:
                actions["state_delta"] = without_temp(actions["state_delta"])
            event = await store.add_event(
                EventRow(
                    tenant_id=tenant_id,
                    session_id=session_id,
                    sequence=row.last_sequence,
                    author=data.author,
                    invocation_id=data.invocation_id,
                    timestamp=data.timestamp or now,
                    content=data.content,
                    actions=actions,
                    metadata_=dict(data.metadata),
                    created_at=now,
                )
            )
            written.session = row
            written.event = _event_model(event)
            return _event_model(event, temp=split.temp)

        payload = {"session": str(session_id), "event": data.model_dump(mode="json")}
        if self._db.is_postgres:
            fast = await self._append_pg(
                tenant_id,
                session_id,
                data,
                split,
                now=now,
                if_match=if_match,
                idempotency_key=idempotency_key,
                payload=payload,
            )
            if fast is not None:
                return fast
        event, replayed = await run_idempotent(
            self._db,
            tenant_id=tenant_id,
            key=idempotency_key,
            operation=f"sessions.{session_id}.events",
            payload=payload,
            model=Event,
            work=work,
        )
        if not replayed:
            await self._publish(tenant_id, written)
            if written.event is not None:
                self._recent.add(written.event)
        return event

    async def _append_pg(
        self,
        tenant_id: UUID,
        session_id: UUID,
        data: EventCreate,
        split: SplitDelta,
        *,
        now: datetime,
        if_match: int | None,
        idempotency_key: str | None,
        payload: JSON,
    ) -> Event | None:
        """Append in one statement on PostgreSQL; None when a check failed (the ORM path explains why)."""
        import asyncpg

        actions = data.actions.model_dump(mode="json", exclude_none=True) if data.actions else None
        if actions is not None and "state_delta" in actions:
            actions["state_delta"] = without_temp(actions["state_delta"])
        event = Event(
            id=new_id(),
            session_id=session_id,
            sequence=0,
            author=data.author,
            invocation_id=data.invocation_id,
            timestamp=as_utc(data.timestamp) if data.timestamp else now,
            content=data.content,
            actions=EventActions.model_validate(actions) if actions is not None else None,
            metadata=dict(data.metadata),
            created_at=now,
        )
        answer = event
        if split.temp:
            merged = {**(actions or {}).get("state_delta", {}), **split.temp}
            base = event.actions or EventActions()
            answer = event.model_copy(update={"actions": base.model_copy(update={"state_delta": merged})})
        session_set, session_del = _merge_patch(split.session)
        user_set, user_del = _merge_patch(split.user)
        app_set, app_del = _merge_patch(split.app)
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            return None  # the ORM path raises the precise 422
        try:
            row = await self._batcher.append(
                (
                    session_id,
                    tenant_id,
                    now,
                    session_set,
                    session_del,
                    if_match,
                    user_set,
                    user_del,
                    app_set,
                    app_del,
                    event.id,
                    event.timestamp,
                    event.author,
                    event.invocation_id,
                    json.dumps(event.content),
                    json.dumps(actions) if actions is not None else None,
                    json.dumps(event.metadata),
                    idempotency_key,
                    f"sessions.{session_id}.events",
                    request_fingerprint(payload) if idempotency_key else None,
                    answer.model_dump_json() if idempotency_key else None,
                )
            )
        except asyncpg.UniqueViolationError:
            return None  # the Idempotency-Key exists already: the ORM path replays its answer
        if row is None:
            return None
        event.sequence = int(row["last_sequence"])
        written = _Written(session=_row_from_record(row))
        agent = row["agent_id"] or NO_AGENT
        if row["user_version_after"] is not None:
            written.user = (agent, row["user_id"], _as_json(row["user_state_after"]), int(row["user_version_after"]))
        if row["app_version_after"] is not None:
            written.app = (agent, _as_json(row["app_state_after"]), int(row["app_version_after"]))
        await self._publish(tenant_id, written)
        self._recent.add(event)
        return answer.model_copy(update={"sequence": event.sequence})

    async def update_session(
        self, *, tenant_id: UUID, session_id: UUID, data: SessionUpdate, if_match: int | None = None
    ) -> Session:
        """Apply a partial update; `state` is merged like a delta."""
        now = utcnow()
        fields = data.model_dump(exclude_unset=True)
        for name in ("scope", "state", "metadata", "is_active"):
            if name in fields and fields[name] is None:
                raise Invalid(f"body.{name}", "may be omitted but not null")
        written = _Written()
        async with self._db.write() as db:
            store = SessionStore(db)
            row = await self._locked(store, tenant_id, session_id, if_match)
            if "agent_id" in fields:
                row.agent_id = fields["agent_id"]
            if "scope" in fields:
                row.scope = fields["scope"]
            if "metadata" in fields:
                row.metadata_ = fields["metadata"]
            if "expires_at" in fields:
                row.expires_at = fields["expires_at"]
            if "is_active" in fields:
                if fields["is_active"] and _is_expired(row, now):
                    raise Conflict(f"session {session_id} has expired; set a later expires_at to reactivate it")
                row.is_active = fields["is_active"]
            split = split_delta(fields.get("state") or {})
            if split.session:
                row.state = apply_delta(row.state, split.session)
            app, user = await self._apply_shared(store, row, split.app, split.user, written)
            row.version += 1
            row.updated_at = now
            written.session = row
            session = self._model(row, app, user)
        await self._publish(tenant_id, written)
        return session

    async def delete_session(self, *, tenant_id: UUID, session_id: UUID) -> None:
        """Delete a session, its events and, recursively, its child sessions."""
        async with self._db.write() as db:
            store = SessionStore(db)
            descendants = await store.descendant_ids(tenant_id=tenant_id, session_id=session_id)
            if not await store.delete(tenant_id=tenant_id, session_id=session_id):
                raise NotFound("session", session_id)
        await self._cache.delete(_session_key(session_id), *(_session_key(d) for d in descendants))
        for sid in (session_id, *descendants):
            self._recent.drop(sid)

    async def expire_sessions(self) -> int:
        """Mark every session past its `expires_at` inactive; return how many."""
        async with self._db.write() as db:
            expired = await SessionStore(db).deactivate_expired(now=utcnow())
        if expired:
            await self._cache.delete(*(_session_key(sid) for _t, sid in expired))
        return len(expired)

    # -- helpers --------------------------------------------------------------------------------

    async def _locked(self, store: SessionStore, tenant_id: UUID, session_id: UUID, if_match: int | None) -> SessionRow:
        row = await store.get(tenant_id=tenant_id, session_id=session_id, lock=True)
        if row is None:
            raise NotFound("session", session_id)
        if if_match is not None and row.version != if_match:
            raise PreconditionFailed(
                f"session {session_id} is at version {row.version}, not {if_match}; re-read it and retry"
            )
        return row

    async def _apply_shared(
        self, store: SessionStore, row: SessionRow, app_delta: JSON, user_delta: JSON, written: _Written
    ) -> tuple[JSON, JSON]:
        """Apply app: and user: deltas under row locks; return the resulting app and user state."""
        agent = row.agent_id or NO_AGENT
        if app_delta:
            app_row = await store.locked_app_state(tenant_id=row.tenant_id, agent_id=agent)
            app_row.state = apply_delta(app_row.state, app_delta)
            app_row.version += 1
            app_row.updated_at = utcnow()
            written.app = (agent, app_row.state, app_row.version)
            app = app_row.state
        else:
            app_row_ro = await store.app_state(tenant_id=row.tenant_id, agent_id=agent)
            app = app_row_ro.state if app_row_ro else {}
        if user_delta:
            user_row = await store.locked_user_state(tenant_id=row.tenant_id, agent_id=agent, user_id=row.user_id)
            user_row.state = apply_delta(user_row.state, user_delta)
            user_row.version += 1
            user_row.updated_at = utcnow()
            written.user = (agent, row.user_id, user_row.state, user_row.version)
            user = user_row.state
        else:
            user_row_ro = await store.user_state(tenant_id=row.tenant_id, agent_id=agent, user_id=row.user_id)
            user = user_row_ro.state if user_row_ro else {}
        await store.flush()
        return app, user

    def _model(self, row: SessionRow, app: Mapping[str, Any], user: Mapping[str, Any]) -> Session:
        snapshot = _row_snapshot(row)
        return Session.model_validate({**snapshot, "state": merged_state(row.state, app, user)})

    async def _publish(self, tenant_id: UUID, written: _Written) -> None:
        """Write what a committed transaction changed into the cache (versioned)."""
        if written.session is not None:
            row = written.session
            await self._cache.set(
                _session_key(row.id), json.dumps(_row_snapshot(row)), ttl=self._ttl, version=row.version
            )
        if written.app is not None:
            agent, state, version = written.app
            await self._cache.set(_app_key(tenant_id, agent), json.dumps(state), ttl=SHARED_STATE_TTL, version=version)
        if written.user is not None:
            agent, user_id, state, version = written.user
            await self._cache.set(
                _user_key(tenant_id, agent, user_id), json.dumps(state), ttl=SHARED_STATE_TTL, version=version
            )

    async def _cached_snapshot(self, tenant_id: UUID, session_id: UUID) -> dict[str, Any]:
        raw = await self._cache.get(_session_key(session_id), touch_ttl=self._ttl)
        if raw is not None:
            snapshot: dict[str, Any] = json.loads(raw)
            if snapshot["tenant_id"] != str(tenant_id):
                raise NotFound("session", session_id)
            return snapshot
        async with self._db.read() as db:
            row = await SessionStore(db).get(tenant_id=tenant_id, session_id=session_id)
        if row is None:
            raise NotFound("session", session_id)
        snapshot = _row_snapshot(row)
        await self._cache.set(_session_key(session_id), json.dumps(snapshot), ttl=self._ttl, version=row.version)
        return snapshot

    async def _shared_state(self, tenant_id: UUID, agent: str, user_id: str) -> tuple[JSON, JSON]:
        app_key, user_key = _app_key(tenant_id, agent), _user_key(tenant_id, agent, user_id)
        app_raw, user_raw = await self._cache.get_many([app_key, user_key])
        if app_raw is not None and user_raw is not None:
            return json.loads(app_raw), json.loads(user_raw)
        async with self._db.read() as db:
            store = SessionStore(db)
            app_row = await store.app_state(tenant_id=tenant_id, agent_id=agent)
            user_row = await store.user_state(tenant_id=tenant_id, agent_id=agent, user_id=user_id)
        app = app_row.state if app_row else {}
        user = user_row.state if user_row else {}
        await self._cache.set(app_key, json.dumps(app), ttl=SHARED_STATE_TTL, version=app_row.version if app_row else 0)
        await self._cache.set(
            user_key, json.dumps(user), ttl=SHARED_STATE_TTL, version=user_row.version if user_row else 0
        )
        return app, user
