"""The vector index interface: nearest neighbours by cosine among the vectors of one partition.

A *partition* is the exact-match key a search is confined to (for memories: tenant, bank and
`scope_key`, so a search only ranks one scope's rows — ARCHITECTURE §2 "Scopes"). A `VectorFilter`
narrows the candidates further with backend-neutral conditions on named fields (columns on the SQL
backends, payload fields on Qdrant). Vectors are L2-normalised `float32` (the embedding providers'
contract), so cosine similarity is a dot product; scores are cosine similarities, higher is better.

Two kinds of backend:
- row-backed (`SqlVectorIndex`: `pgvector`, `sqlite`): vectors live in a column of their owner's
  rows (a registered `SqlCollection`); the owner writes them in its own transaction, and
  `search_in(session, ...)` searches inside the caller's transaction;
- external (`qdrant`): the owner mirrors its vectors with `upsert`/`delete` after commit.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np
from sqlalchemy import ColumnElement, Table, Uuid, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from contextiq.core.db.engine import Database
from contextiq.core.llm.embeddings.base import Vector

__all__ = ["Hit", "SqlCollection", "SqlVectorIndex", "VectorFilter", "VectorIndex", "VectorItem"]

FilterValue = str | int | float | bool | datetime


@dataclass(frozen=True, slots=True)
class VectorItem:
    """One vector to index: its id, its partition (exact-match fields) and a payload returned with hits."""

    id: str
    vector: Vector
    partition: Mapping[str, str]
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result: the item's id, its cosine similarity to the query and its payload."""

    id: str
    score: float
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VectorFilter:
    """Conditions every hit must meet, all of them (AND).

    Attributes:
        equals: field == value.
        any_of: field is one of the values.
        at_least: field >= value (numbers or datetimes).
        before: field < value (numbers or datetimes).
        unset_or_after: field is missing/null or > value (an expiry: "not expired at value").
    """

    equals: Mapping[str, FilterValue] = field(default_factory=dict)
    any_of: Mapping[str, Sequence[str]] = field(default_factory=dict)
    at_least: Mapping[str, float | datetime] = field(default_factory=dict)
    before: Mapping[str, float | datetime] = field(default_factory=dict)
    unset_or_after: Mapping[str, datetime] = field(default_factory=dict)


class VectorIndex(abc.ABC):
    """Nearest neighbours among the vectors of one partition."""

    name: str = "vector-index"
    #: True when vectors live in their owner's rows (the owner's transaction writes them).
    row_backed: bool = False

    @abc.abstractmethod
    async def ensure_collection(self, *, collection: str, dimension: int) -> None:
        """Make `collection` ready for vectors of `dimension` (idempotent)."""

    @abc.abstractmethod
    async def upsert(self, *, collection: str, items: Sequence[VectorItem]) -> None:
        """Insert or replace items by id."""

    @abc.abstractmethod
    async def delete(self, *, collection: str, ids: Sequence[str]) -> None:
        """Remove items by id; unknown ids are ignored."""

    @abc.abstractmethod
    async def search(
        self,
        *,
        collection: str,
        partition: Mapping[str, str],
        vector: Vector,
        limit: int,
        filter: VectorFilter | None = None,
    ) -> list[Hit]:
        """Return at most `limit` hits of this exact partition, best first, with cosine scores.

        Items whose vector has another dimension than `vector` never match.
        """

    @abc.abstractmethod
    async def count(self, *, collection: str, partition: Mapping[str, str]) -> int:
        """Return how many items with a vector the partition holds."""

    async def aclose(self) -> None:
        """Release connections."""
        return None


@dataclass(frozen=True, slots=True)
class SqlCollection:
    """A table whose rows carry vectors: which columns are the id, partition, vector and payload.

    With `insertable`, `upsert` inserts rows it does not find (a table of vectors only); otherwise
    rows belong to their owner and `upsert`/`delete` only set or clear their vector.
    """

    name: str
    table: Table
    id_column: str
    vector_column: str
    partition_columns: tuple[str, ...]
    payload_columns: tuple[str, ...] = ()
    insertable: bool = False

    def parse_id(self, value: str) -> Any:
        """Return `value` as the id column's Python type."""
        return UUID(value) if isinstance(self.table.c[self.id_column].type, Uuid) else value

    def partition_clause(self, partition: Mapping[str, str]) -> list[ColumnElement[bool]]:
        """Return the equality conditions of a partition (checked against `partition_columns`)."""
        if set(partition) != set(self.partition_columns):
            raise ValueError(
                f"collection {self.name!r} is partitioned by {sorted(self.partition_columns)}, "
                f"got {sorted(partition)}"
            )
        return [self.table.c[k] == _coerce(self.table, k, v) for k, v in partition.items()]

    def filter_clause(self, flt: VectorFilter | None) -> list[ColumnElement[bool]]:
        """Return `flt` as SQL conditions on this table's columns."""
        if flt is None:
            return []
        c = self.table.c
        clauses: list[ColumnElement[bool]] = []
        clauses += [c[k] == _coerce(self.table, k, v) for k, v in flt.equals.items()]
        clauses += [c[k].in_(list(v)) for k, v in flt.any_of.items()]
        clauses += [c[k] >= v for k, v in flt.at_least.items()]
        clauses += [c[k] < v for k, v in flt.before.items()]
        clauses += [or_(c[k].is_(None), c[k] > v) for k, v in flt.unset_or_after.items()]
        return clauses


def _coerce(table: Table, column: str, value: Any) -> Any:
    if isinstance(table.c[column].type, Uuid) and isinstance(value, str):
        return UUID(value)
    return value


class SqlVectorIndex(VectorIndex):
    """Shared behaviour of the row-backed backends; subclasses rank with `_search`."""

    row_backed = True

    def __init__(self, db: Database, collections: Sequence[SqlCollection] = ()) -> None:
        self._db = db
        self._collections: dict[str, SqlCollection] = {}
        for c in collections:
            self.register(c)

    def register(self, collection: SqlCollection) -> None:
        """Make a table's vectors searchable under `collection.name`."""
        self._collections[collection.name] = collection

    def collection(self, name: str) -> SqlCollection:
        """Return the registered collection `name`."""
        try:
            return self._collections[name]
        except KeyError:
            raise KeyError(f"no vector collection {name!r} is registered") from None

    @override
    async def ensure_collection(self, *, collection: str, dimension: int) -> None:
        self.collection(collection)  # the table exists through the migrations

    @override
    async def upsert(self, *, collection: str, items: Sequence[VectorItem]) -> None:
        c = self.collection(collection)
        async with self._db.write() as session:
            for item in items:
                values: dict[str, Any] = {c.vector_column: np.asarray(item.vector, dtype=np.float32)}
                values.update({k: _coerce(c.table, k, v) for k, v in item.partition.items()})
                values.update({k: v for k, v in item.payload.items() if k in c.payload_columns})
                ident = c.parse_id(item.id)
                result: Any = await session.execute(
                    update(c.table).where(c.table.c[c.id_column] == ident).values(**values)
                )
                if not result.rowcount and c.insertable:
                    await session.execute(insert(c.table).values({c.id_column: ident, **values}))

    @override
    async def delete(self, *, collection: str, ids: Sequence[str]) -> None:
        c = self.collection(collection)
        keys = [c.parse_id(i) for i in ids]
        if not keys:
            return
        where = c.table.c[c.id_column].in_(keys)
        async with self._db.write() as session:
            if c.insertable:
                await session.execute(delete(c.table).where(where))
            else:
                await session.execute(update(c.table).where(where).values({c.vector_column: None}))

    @override
    async def search(
        self,
        *,
        collection: str,
        partition: Mapping[str, str],
        vector: Vector,
        limit: int,
        filter: VectorFilter | None = None,
    ) -> list[Hit]:
        async with self._db.read() as session:
            return await self.search_in(
                session, collection=collection, partition=partition, vector=vector, limit=limit, filter=filter
            )

    async def search_in(
        self,
        session: AsyncSession,
        *,
        collection: str,
        partition: Mapping[str, str],
        vector: Vector,
        limit: int,
        filter: VectorFilter | None = None,
        where: Sequence[ColumnElement[bool]] = (),
    ) -> list[Hit]:
        """Search inside the caller's transaction (it sees that transaction's own writes).

        `where` adds SQL conditions on the collection's table (for callers that own the table).
        """
        if limit <= 0:
            return []
        c = self.collection(collection)
        conditions = [
            *c.partition_clause(partition),
            c.table.c[c.vector_column].is_not(None),
            *c.filter_clause(filter),
            *where,
        ]
        return await self._search(session, c, np.asarray(vector, dtype=np.float32), limit, and_(*conditions))

    @abc.abstractmethod
    async def _search(
        self, session: AsyncSession, c: SqlCollection, vector: Vector, limit: int, where: ColumnElement[bool]
    ) -> list[Hit]:
        """Rank the rows matching `where` by cosine similarity to `vector`."""

    @override
    async def count(self, *, collection: str, partition: Mapping[str, str]) -> int:
        c = self.collection(collection)
        stmt = (
            select(func.count())
            .select_from(c.table)
            .where(*c.partition_clause(partition), c.table.c[c.vector_column].is_not(None))
        )
        async with self._db.read() as session:
            return int(await session.scalar(stmt) or 0)
