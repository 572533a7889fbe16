"""Exact cosine search on PostgreSQL with pgvector: `<=>` over the rows of one partition.

The partition's B-tree index (for memories: tenant, bank, `scope_key`) picks the rows first and the
distance ranks only those, so the search is exact and needs no ANN index; HNSW indexes are for large
unscoped collections and are made by their owners' migrations.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import ColumnElement, Float, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from contextiq.core.db.types import Embedding
from contextiq.core.llm.embeddings.base import Vector
from contextiq.core.search.base import Hit, SqlCollection, SqlVectorIndex

__all__ = ["PgVectorIndex"]


class PgVectorIndex(SqlVectorIndex):
    """Row-backed vectors in a pgvector column, ranked in SQL."""

    name = "pgvector"

    @override
    async def _search(
        self, session: AsyncSession, c: SqlCollection, vector: Vector, limit: int, where: ColumnElement[bool]
    ) -> list[Hit]:
        column = c.table.c[c.vector_column]
        query = bindparam("query_vector", np.asarray(vector, dtype=np.float32), type_=Embedding())
        distance = column.op("<=>", return_type=Float)(query)
        payload = [c.table.c[p] for p in c.payload_columns]
        stmt = (
            select(c.table.c[c.id_column], (1 - distance).label("score"), *payload)
            .where(where, func.vector_dims(column) == len(vector))
            .order_by(distance, c.table.c[c.id_column])
            .limit(limit)
        )
        rows = (await session.execute(stmt)).all()
        return [
            Hit(
                id=str(row[0]),
                score=float(row[1]),
                payload=dict(zip(c.payload_columns, row[2:], strict=True)),
            )
            for row in rows
        ]
