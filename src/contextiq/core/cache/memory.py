"""The in-process cache used when no Redis is configured: bounded LRU with per-entry expiry."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence

from typing_extensions import override

from contextiq.core.cache.base import Cache


class MemoryCache(Cache):
    """A bounded, in-process LRU cache with versioned writes and TTLs."""

    name = "memory"

    def __init__(self, *, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._data: OrderedDict[str, tuple[str, int, float]] = OrderedDict()

    def _live(self, key: str) -> tuple[str, int, float] | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[2] <= time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return entry

    @override
    async def get(self, key: str, *, touch_ttl: int | None = None) -> str | None:
        entry = self._live(key)
        if entry is None:
            return None
        if touch_ttl is not None:
            self._data[key] = (entry[0], entry[1], time.monotonic() + touch_ttl)
        return entry[0]

    @override
    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        return [await self.get(k) for k in keys]

    @override
    async def set(self, key: str, value: str, *, ttl: int, version: int) -> bool:
        entry = self._live(key)
        if entry is not None and entry[1] > version:
            return False
        self._data[key] = (value, version, time.monotonic() + ttl)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)
        return True

    @override
    async def touch(self, key: str, *, ttl: int) -> None:
        entry = self._live(key)
        if entry is not None:
            self._data[key] = (entry[0], entry[1], time.monotonic() + ttl)

    @override
    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    @override
    async def incr(self, key: str, *, ttl: int) -> int:
        entry = self._live(key)
        count = (int(entry[0]) if entry else 0) + 1
        expires = entry[2] if entry else time.monotonic() + ttl
        self._data[key] = (str(count), 0, expires)
        return count

    @override
    async def ping(self) -> None:
        return None
