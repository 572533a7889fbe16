"""Exact cosine search on SQLite: the partition's float32 BLOBs scored with numpy.

SQLite has no vector type; the partition's rows are read (its B-tree index finds them) and ranked
with one matrix-vector product. Exact, and fast for the few thousand rows of one scope.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import override

from contextiq.core.llm.embeddings.base import Vector
from contextiq.core.search.base import Hit, SqlCollection, SqlVectorIndex

__all__ = ["SqliteVectorIndex"]


class SqliteVectorIndex(SqlVectorIndex):
    """Row-backed vectors in a BLOB column, ranked with numpy."""

    name = "sqlite"

    @override
    async def _search(
        self, session: AsyncSession, c: SqlCollection, vector: Vector, limit: int, where: ColumnElement[bool]
    ) -> list[Hit]:
        payload = [c.table.c[p] for p in c.payload_columns]
        stmt = select(c.table.c[c.id_column], c.table.c[c.vector_column], *payload).where(where)
        fetched = (await session.execute(stmt)).all()
        rows = [r for r in fetched if r[1] is not None and len(r[1]) == vector.size]
        if not rows:
            return []
        matrix = np.stack([r[1] for r in rows]).astype(np.float32, copy=False)
        scores = matrix @ np.asarray(vector, dtype=np.float32)
        candidates: Sequence[int] = range(len(rows))
        if len(rows) > limit:
            # Keep the best `limit` (plus ties at the boundary) before the exact sort.
            kth = float(np.partition(scores, len(rows) - limit)[len(rows) - limit])
            candidates = [int(i) for i in np.flatnonzero(scores >= kth)]
        # Best first; ties broken by id so that results are stable.
        order = sorted(candidates, key=lambda i: (-float(scores[i]), str(rows[i][0])))[:limit]
        return [
            Hit(
                id=str(rows[i][0]),
                score=float(scores[i]),
                payload=dict(zip(c.payload_columns, rows[i][2:], strict=True)),
            )
            for i in order
        ]
