"""`Idempotency-Key` support: a retried create returns the first result and stores nothing twice.

The key is recorded in the same transaction as the write it guards. Two concurrent requests with one
key both try to record it; the loser's transaction (its write included) rolls back on the primary
key, and it then replays the winner's stored response.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from contextiq.core.clock import utcnow
from contextiq.core.db.base import Base
from contextiq.core.db.engine import Database
from contextiq.core.db.types import JSONType, UTCDateTime
from contextiq.core.errors import Invalid
from contextiq.core.types import JSON

M = TypeVar("M", bound=BaseModel)
MAX_KEY_LENGTH = 255


class IdempotencyRow(Base):
    """The first response to a request made with an `Idempotency-Key`."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    operation: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[JSON] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


def request_fingerprint(payload: Any) -> str:
    """Return a stable hash of a request payload (to refuse a key reused for a different request)."""
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


async def run_idempotent(
    db: Database,
    *,
    tenant_id: UUID,
    key: str | None,
    operation: str,
    payload: Any,
    model: type[M],
    work: Callable[[AsyncSession], Awaitable[M]],
) -> tuple[M, bool]:
    """Run `work` in a write transaction once per (tenant, key, operation); return (result, replayed)."""
    if key is None:
        async with db.write() as session:
            return await work(session), False
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Invalid("header.Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters")
    fingerprint = request_fingerprint(payload)
    for _attempt in range(3):
        try:
            async with db.write() as session:
                stored = await _lookup(session, tenant_id=tenant_id, key=key, operation=operation)
                if stored is not None:
                    return _replay(stored, fingerprint, model), True
                result = await work(session)
                session.add(
                    IdempotencyRow(
                        tenant_id=tenant_id,
                        key=key,
                        operation=operation,
                        request_hash=fingerprint,
                        response=result.model_dump(mode="json"),
                    )
                )
                await session.flush()
                return result, False
        except IntegrityError:
            # A concurrent request with the same key committed first; replay its response.
            async with db.read() as session:
                stored = await _lookup(session, tenant_id=tenant_id, key=key, operation=operation)
            if stored is not None:
                return _replay(stored, fingerprint, model), True
            raise
    raise RuntimeError("unreachable")  # pragma: no cover


async def _lookup(session: AsyncSession, *, tenant_id: UUID, key: str, operation: str) -> IdempotencyRow | None:
    stmt = select(IdempotencyRow).where(
        IdempotencyRow.tenant_id == tenant_id,
        IdempotencyRow.key == key,
        IdempotencyRow.operation == operation,
    )
    return await session.scalar(stmt)


def _replay(stored: IdempotencyRow, fingerprint: str, model: type[M]) -> M:
    if stored.request_hash != fingerprint:
        raise Invalid(
            "header.Idempotency-Key",
            "this key was already used with a different request body; use a new key",
        )
    return model.model_validate(stored.response)
