"""The cache interface. Values are strings (JSON made by the caller); every entry has a TTL."""

from __future__ import annotations

import abc
from collections.abc import Sequence


class Cache(abc.ABC):
    """A key-value cache whose writes are versioned, so a slow writer never overwrites a newer value."""

    name: str = "cache"

    @abc.abstractmethod
    async def get(self, key: str, *, touch_ttl: int | None = None) -> str | None:
        """Return the value of `key` (None when absent or expired), resetting its TTL if `touch_ttl`."""

    @abc.abstractmethod
    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Return the values of `keys` in order (None for misses), in one round trip."""

    @abc.abstractmethod
    async def set(self, key: str, value: str, *, ttl: int, version: int) -> bool:
        """Store `value` unless the cache holds the same key at a higher version; return whether stored."""

    @abc.abstractmethod
    async def touch(self, key: str, *, ttl: int) -> None:
        """Extend the TTL of `key` (sliding expiry); nothing happens if it is absent."""

    @abc.abstractmethod
    async def delete(self, *keys: str) -> None:
        """Remove `keys`."""

    @abc.abstractmethod
    async def incr(self, key: str, *, ttl: int) -> int:
        """Increment a counter, creating it with `ttl` seconds to live; return the new count."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise if the cache is unreachable."""

    async def aclose(self) -> None:
        """Release connections."""
        return None
