"""Pick the vector index: the database's own (pgvector or SQLite) or Qdrant."""

from __future__ import annotations

from contextiq.core.db.engine import Database
from contextiq.core.search.base import VectorIndex


def make_vector_index(
    db: Database, *, backend: str = "database", qdrant_url: str | None = None
) -> VectorIndex:
    """Return the index for `backend`: `database` (pgvector or SQLite/numpy, by dialect) or `qdrant`."""
    if backend == "database":
        if db.is_postgres:
            from contextiq.core.search.pgvector import PgVectorIndex

            return PgVectorIndex(db)
        from contextiq.core.search.sqlite import SqliteVectorIndex

        return SqliteVectorIndex(db)
    if backend == "qdrant":
        from contextiq.core.search.qdrant import QdrantVectorIndex

        return QdrantVectorIndex(url=qdrant_url) if qdrant_url else QdrantVectorIndex(location=":memory:")
    raise ValueError(f"unknown vector index backend {backend!r}; expected database or qdrant")
