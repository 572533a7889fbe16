"""Column types that mean the same thing on PostgreSQL and SQLite.

| type        | PostgreSQL            | SQLite                          |
|-------------|-----------------------|---------------------------------|
| JSONType    | JSONB                 | JSON (TEXT)                     |
| StrList     | TEXT[]                | JSON array                      |
| UTCDateTime | TIMESTAMPTZ           | ISO text, read back as UTC      |
| Embedding   | pgvector `vector(n)`  | float32 BLOB                    |
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pgvector.sqlalchemy  # noqa: F401  (registers `vector` for reflection: schema_diff, autogenerate)
from sqlalchemy import JSON, DateTime, LargeBinary, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

JSONType = JSON().with_variant(JSONB(), "postgresql")
StrList = JSON().with_variant(ARRAY(Text()), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both dialects (SQLite keeps no zone, so it is restored on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Embedding(TypeDecorator[np.ndarray]):
    """A float32 vector: pgvector on PostgreSQL, a little-endian float32 BLOB on SQLite."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, dimension: int | None = None) -> None:
        super().__init__()
        self.dimension = dimension

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from pgvector.sqlalchemy import Vector

            return dialect.type_descriptor(Vector(self.dimension))
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        array = np.asarray(value, dtype=np.float32)
        if dialect.name == "postgresql":
            return array
        return array.astype("<f4").tobytes()

    def process_result_value(self, value: Any, dialect: Dialect) -> np.ndarray | None:
        if value is None:
            return None
        if isinstance(value, bytes | bytearray | memoryview):
            return np.frombuffer(bytes(value), dtype="<f4")
        return np.asarray(value, dtype=np.float32)

