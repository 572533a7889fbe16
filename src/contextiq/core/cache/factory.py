"""Pick the cache backend from settings."""

from __future__ import annotations

from contextiq.core.cache.base import Cache
from contextiq.core.cache.memory import MemoryCache


def make_cache(redis_url: str | None) -> Cache:
    """Return a Redis cache when `redis_url` is set, an in-process one otherwise."""
    if redis_url:
        from contextiq.core.cache.redis import RedisCache

        return RedisCache(redis_url)
    return MemoryCache()
