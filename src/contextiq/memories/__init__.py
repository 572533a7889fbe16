"""Memories: banks, scoped facts with revisions and TTLs, retrieval (seed 000 §2.3–2.4, §4.1)."""

from __future__ import annotations

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
