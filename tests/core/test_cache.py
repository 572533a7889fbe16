"""The cache backends (in-process and Redis) behave the same: versioned writes, TTLs, counters."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from contextiq.core.cache import Cache, MemoryCache


@pytest.fixture(params=[pytest.param("memory"), pytest.param("redis", marks=pytest.mark.redis)])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    from contextiq.core.cache.redis import RedisCache

    backend = RedisCache(request.getfixturevalue("redis_url"))
    try:
        yield backend
    finally:
        await backend.aclose()


def _key() -> str:
    return f"test:{uuid.uuid4()}"


async def test_set_get_delete(cache: Cache) -> None:
    key = _key()
    assert await cache.get(key) is None
    assert await cache.set(key, "v|with|bars", ttl=60, version=1)
    assert await cache.get(key) == "v|with|bars"
    assert await cache.get_many([key, _key()]) == ["v|with|bars", None]
    await cache.delete(key)
    assert await cache.get(key) is None


async def test_an_older_version_never_overwrites_a_newer_one(cache: Cache) -> None:
    key = _key()
    assert await cache.set(key, "v5", ttl=60, version=5)
    assert not await cache.set(key, "v4", ttl=60, version=4)
    assert await cache.get(key) == "v5"
    assert await cache.set(key, "v6", ttl=60, version=6)
    assert await cache.get(key) == "v6"


async def test_counter_counts_within_its_window(cache: Cache) -> None:
    key = _key()
    assert [await cache.incr(key, ttl=60) for _ in range(3)] == [1, 2, 3]


async def test_touch_on_get_keeps_the_entry(cache: Cache) -> None:
    key = _key()
    await cache.set(key, "x", ttl=60, version=1)
    assert await cache.get(key, touch_ttl=120) == "x"
    await cache.touch(key, ttl=120)
    assert await cache.get(key) == "x"
