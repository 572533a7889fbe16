"""Database access: the engine and transactions, the shared declarative base, portable column types."""

from __future__ import annotations

from contextiq.core.db.base import Base
from contextiq.core.db.engine import Database

__all__ = ["Base", "Database"]
