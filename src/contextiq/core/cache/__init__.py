"""Caches: Redis when configured, an in-process TTL cache otherwise (ARCHITECTURE §2 "Cache")."""

from __future__ import annotations

from contextiq.core.cache.base import Cache
from contextiq.core.cache.factory import make_cache
from contextiq.core.cache.memory import MemoryCache

__all__ = ["Cache", "MemoryCache", "make_cache"]
