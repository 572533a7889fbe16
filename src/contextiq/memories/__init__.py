"""Memories: banks, scoped facts with revisions and TTLs, retrieval (seed 000 §2.3–2.4, §4.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contextiq.memories.models import (
    Memory,
    MemoryBank,
    MemoryBankCreate,
    MemoryBankUpdate,
    MemoryCreate,
    MemoryFilter,
    MemoryPage,
    MemoryRevision,
    MemoryUpdate,
    RetrieveFilters,
    RetrieveRequest,
    RetrieveResponse,
)

if TYPE_CHECKING:
    from contextiq.memories.service import MemoryService

__all__ = [
    "Memory",
    "MemoryBank",
    "MemoryBankCreate",
    "MemoryBankUpdate",
    "MemoryCreate",
    "MemoryFilter",
    "MemoryPage",
    "MemoryRevision",
    "MemoryService",
    "MemoryUpdate",
    "RetrieveFilters",
    "RetrieveRequest",
    "RetrieveResponse",
]


def __getattr__(name: str) -> Any:
    # The service (SQLAlchemy, numpy, models) loads on first use, so the SDK's imports of the wire
    # models stay light.
    if name in {'MemoryService'}:
        import importlib

        return getattr(importlib.import_module("contextiq.memories.service"), name)
    raise AttributeError(name)
