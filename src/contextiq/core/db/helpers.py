"""Dialect-neutral statement helpers for the few places SQL differs (upserts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert


def insert_ignore(session: AsyncSession, table: Table, values: Mapping[str, Any], *, keys: Sequence[str]) -> Insert:
    """Return an INSERT that does nothing when a row with the same `keys` exists."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).values(**values).on_conflict_do_nothing(index_elements=list(keys))
    return sqlite.insert(table).values(**values).on_conflict_do_nothing(index_elements=list(keys))
