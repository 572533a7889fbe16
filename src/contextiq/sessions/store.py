"""Queries over sessions, events and shared state. Takes an AsyncSession; returns rows or None."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from contextiq.core.db.helpers import insert_ignore
from contextiq.core.types import JSON
from contextiq.sessions.models import EventFilter, SessionFilter
from contextiq.sessions.tables import AppStateRow, EventRow, SessionRow, UserStateRow

NO_AGENT = ""  # app:/user: state of sessions that name no agent


class SessionStore:
    """Reads and writes session rows, events and app/user state inside the caller's transaction."""

    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def flush(self) -> None:
        """Send pending changes so that constraint errors surface inside the transaction."""
        await self._db.flush()

    async def add(self, row: SessionRow) -> SessionRow:
        self._db.add(row)
        await self._db.flush()
        return row

    async def get(self, *, tenant_id: UUID, session_id: UUID, lock: bool = False) -> SessionRow | None:
        stmt = select(SessionRow).where(SessionRow.tenant_id == tenant_id, SessionRow.id == session_id)
        if lock:
            # Serializes appends to one session on PostgreSQL; SQLite has one writer anyway.
            stmt = stmt.with_for_update()
        return await self._db.scalar(stmt)

    async def list_sessions(
        self, *, tenant_id: UUID, filters: SessionFilter, after: tuple[datetime, UUID] | None, limit: int
    ) -> Sequence[SessionRow]:
        stmt = select(SessionRow).where(SessionRow.tenant_id == tenant_id)
        if filters.user_id is not None:
            stmt = stmt.where(SessionRow.user_id == filters.user_id)
        if filters.agent_id is not None:
            stmt = stmt.where(SessionRow.agent_id == filters.agent_id)
        if filters.is_active is not None:
            stmt = stmt.where(SessionRow.is_active == filters.is_active)
        if filters.parent_session_id is not None:
            stmt = stmt.where(SessionRow.parent_session_id == filters.parent_session_id)
        if filters.created_after is not None:
            stmt = stmt.where(SessionRow.created_at >= filters.created_after)
        if filters.created_before is not None:
            stmt = stmt.where(SessionRow.created_at < filters.created_before)
        if after is not None:
            created, ident = after
            stmt = stmt.where(
                or_(SessionRow.created_at < created, and_(SessionRow.created_at == created, SessionRow.id < ident))
            )
        stmt = stmt.order_by(SessionRow.created_at.desc(), SessionRow.id.desc()).limit(limit)
        return (await self._db.scalars(stmt)).all()

    async def descendant_ids(self, *, tenant_id: UUID, session_id: UUID) -> list[UUID]:
        """Return the ids of a session's children, grandchildren and so on."""
        tree = (
            select(SessionRow.id)
            .where(SessionRow.tenant_id == tenant_id, SessionRow.parent_session_id == session_id)
            .cte("tree", recursive=True)
        )
        tree = tree.union_all(select(SessionRow.id).where(SessionRow.parent_session_id == tree.c.id))
        return list((await self._db.scalars(select(tree.c.id))).all())

    async def delete(self, *, tenant_id: UUID, session_id: UUID) -> bool:
        result: Any = await self._db.execute(
            delete(SessionRow).where(SessionRow.tenant_id == tenant_id, SessionRow.id == session_id)
        )
        return bool(result.rowcount)

    async def deactivate_expired(self, *, now: datetime, limit: int = 1000) -> list[tuple[UUID, UUID]]:
        """Mark sessions past `expires_at` inactive; return their (tenant_id, id)."""
        ids = (
            select(SessionRow.id)
            .where(SessionRow.is_active.is_(True), SessionRow.expires_at <= now)
            .limit(limit)
            .scalar_subquery()
        )
        result = await self._db.execute(
            update(SessionRow)
            .where(SessionRow.id.in_(ids))
            .values(is_active=False, version=SessionRow.version + 1, updated_at=now)
            .returning(SessionRow.tenant_id, SessionRow.id)
        )
        return [(row[0], row[1]) for row in result.all()]

    async def locked_app_state(self, *, tenant_id: UUID, agent_id: str) -> AppStateRow:
        """Return the app state row, created if missing, locked for this transaction."""
        await self._db.execute(
            insert_ignore(
                self._db,
                AppStateRow.__table__,  # type: ignore[arg-type]
                {"tenant_id": tenant_id, "agent_id": agent_id, "state": {}, "version": 0},
                keys=("tenant_id", "agent_id"),
            )
        )
        stmt = (
            select(AppStateRow)
            .where(AppStateRow.tenant_id == tenant_id, AppStateRow.agent_id == agent_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        row = await self._db.scalar(stmt)
        assert row is not None
        return row

    async def locked_user_state(self, *, tenant_id: UUID, agent_id: str, user_id: str) -> UserStateRow:
        """Return the user state row, created if missing, locked for this transaction."""
        await self._db.execute(
            insert_ignore(
                self._db,
                UserStateRow.__table__,  # type: ignore[arg-type]
                {"tenant_id": tenant_id, "agent_id": agent_id, "user_id": user_id, "state": {}, "version": 0},
                keys=("tenant_id", "agent_id", "user_id"),
            )
        )
        stmt = (
            select(UserStateRow)
            .where(
                UserStateRow.tenant_id == tenant_id,
                UserStateRow.agent_id == agent_id,
                UserStateRow.user_id == user_id,
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        row = await self._db.scalar(stmt)
        assert row is not None
        return row

    async def shared_states(
        self, *, tenant_id: UUID, pairs: set[tuple[str, str]]
    ) -> tuple[dict[str, JSON], dict[tuple[str, str], JSON]]:
        """Return the app states by agent and user states by (agent, user) for many sessions in two queries."""
        if not pairs:
            return {}, {}
        agents = {agent for agent, _user in pairs}
        users = {user for _agent, user in pairs}
        app_rows = await self._db.scalars(
            select(AppStateRow).where(AppStateRow.tenant_id == tenant_id, AppStateRow.agent_id.in_(agents))
        )
        user_rows = await self._db.scalars(
            select(UserStateRow).where(
                UserStateRow.tenant_id == tenant_id,
                UserStateRow.agent_id.in_(agents),
                UserStateRow.user_id.in_(users),
            )
        )
        return (
            {r.agent_id: r.state for r in app_rows},
            {(r.agent_id, r.user_id): r.state for r in user_rows},
        )

    async def app_state(self, *, tenant_id: UUID, agent_id: str) -> AppStateRow | None:
        stmt = select(AppStateRow).where(AppStateRow.tenant_id == tenant_id, AppStateRow.agent_id == agent_id)
        return await self._db.scalar(stmt)

    async def user_state(self, *, tenant_id: UUID, agent_id: str, user_id: str) -> UserStateRow | None:
        stmt = select(UserStateRow).where(
            UserStateRow.tenant_id == tenant_id,
            UserStateRow.agent_id == agent_id,
            UserStateRow.user_id == user_id,
        )
        return await self._db.scalar(stmt)

    async def add_event(self, row: EventRow) -> EventRow:
        self._db.add(row)
        await self._db.flush()
        return row

    async def list_events(
        self, *, tenant_id: UUID, session_id: UUID, filters: EventFilter, after_sequence: int | None, limit: int
    ) -> Sequence[EventRow]:
        stmt = select(EventRow).where(EventRow.tenant_id == tenant_id, EventRow.session_id == session_id)
        if filters.after is not None:
            stmt = stmt.where(EventRow.timestamp >= filters.after)
        if filters.before is not None:
            stmt = stmt.where(EventRow.timestamp < filters.before)
        if filters.author is not None:
            stmt = stmt.where(EventRow.author == filters.author)
        if filters.invocation_id is not None:
            stmt = stmt.where(EventRow.invocation_id == filters.invocation_id)
        if after_sequence is not None:
            stmt = stmt.where(
                EventRow.sequence > after_sequence if filters.ascending else EventRow.sequence < after_sequence
            )
        order = EventRow.sequence.asc() if filters.ascending else EventRow.sequence.desc()
        return (await self._db.scalars(stmt.order_by(order).limit(limit))).all()

    async def recent_events(self, *, tenant_id: UUID, session_id: UUID, limit: int) -> list[EventRow]:
        """Return the newest `limit` events in ascending sequence order."""
        stmt = (
            select(EventRow)
            .where(EventRow.tenant_id == tenant_id, EventRow.session_id == session_id)
            .order_by(EventRow.sequence.desc())
            .limit(limit)
        )
        rows = list((await self._db.scalars(stmt)).all())
        rows.reverse()
        return rows

    async def count(self, *, tenant_id: UUID) -> int:
        stmt = select(func.count()).select_from(SessionRow).where(SessionRow.tenant_id == tenant_id)
        return int(await self._db.scalar(stmt) or 0)


# The append of one event as ONE statement on PostgreSQL (run on the asyncpg connection, autocommit):
# the UPDATE takes the session's row lock and the next sequence number, the CTEs merge app:/user:
# state (JSON merge: `||` sets keys, `- text[]` deletes those set to null), insert the event and
# record the Idempotency-Key. Any check that fails (unknown, inactive or expired session, stale
# If-Match) leaves `s` empty, so nothing is written and the caller takes the ORM path, which
# raises the precise error. One round trip instead of about ten (bench/sessions.py).
PG_APPEND_EVENT = """
WITH s AS (
    UPDATE sessions
       SET last_sequence = last_sequence + 1,
           version = version + 1,
           updated_at = $3,
           state = CASE WHEN $4::jsonb IS NULL THEN state ELSE (state || $4::jsonb) - $5::text[] END
     WHERE id = $1 AND tenant_id = $2 AND is_active
       AND (expires_at IS NULL OR expires_at > $3)
       AND ($6::bigint IS NULL OR version = $6::bigint)
    RETURNING *
), us AS (
    INSERT INTO user_states AS u (tenant_id, agent_id, user_id, state, version, updated_at)
    SELECT s.tenant_id, coalesce(s.agent_id, ''), s.user_id, $7::jsonb - $8::text[], 1, $3
      FROM s WHERE $7::jsonb IS NOT NULL
    ON CONFLICT (tenant_id, agent_id, user_id) DO UPDATE
       SET state = (u.state || $7::jsonb) - $8::text[], version = u.version + 1, updated_at = $3
    RETURNING u.state, u.version
), aps AS (
    INSERT INTO app_states AS a (tenant_id, agent_id, state, version, updated_at)
    SELECT s.tenant_id, coalesce(s.agent_id, ''), $9::jsonb - $10::text[], 1, $3
      FROM s WHERE $9::jsonb IS NOT NULL
    ON CONFLICT (tenant_id, agent_id) DO UPDATE
       SET state = (a.state || $9::jsonb) - $10::text[], version = a.version + 1, updated_at = $3
    RETURNING a.state, a.version
), ev AS (
    INSERT INTO events (id, timestamp, tenant_id, session_id, sequence, author, invocation_id, content,
                        actions, metadata, created_at)
    SELECT $11, $12, s.tenant_id, s.id, s.last_sequence, $13::varchar, $14::varchar,
           $15::jsonb, $16::jsonb, $17::jsonb, $3
      FROM s
    RETURNING sequence
), idem AS (
    INSERT INTO idempotency_keys (tenant_id, key, operation, request_hash, response, created_at)
    SELECT s.tenant_id, $18::varchar, $19::varchar, $20::varchar,
           jsonb_set($21::jsonb, '{sequence}', to_jsonb(s.last_sequence)), $3
      FROM s WHERE $18::varchar IS NOT NULL
    RETURNING key
)
SELECT $22::int AS batch_index, s.*, (SELECT count(*) FROM ev) AS appended,
       (SELECT state FROM us) AS user_state_after, (SELECT version FROM us) AS user_version_after,
       (SELECT state FROM aps) AS app_state_after, (SELECT version FROM aps) AS app_version_after
  FROM s
"""
