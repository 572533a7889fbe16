"""The Redis cache (seed 000 §6): versioned writes are one Lua script, so they are atomic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from typing_extensions import override

from contextiq.core.cache.base import Cache

# Value layout: "<version>|<payload>". Store only when no newer version is cached.
_SET_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local sep = string.find(current, '|', 1, true)
  if sep and tonumber(string.sub(current, 1, sep - 1)) > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2] .. '|' .. ARGV[1], 'EX', ARGV[3])
return 1
"""

_INCR = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def _payload(raw: Any) -> str | None:
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return text.split("|", 1)[1] if "|" in text else text


class RedisCache(Cache):
    """A cache in Redis, shared by every server and worker process."""

    name = "redis"

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self._client: Any = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._set_script = self._client.register_script(_SET_IF_NEWER)
        self._incr_script = self._client.register_script(_INCR)

    @override
    async def get(self, key: str, *, touch_ttl: int | None = None) -> str | None:
        if touch_ttl is not None:
            return _payload(await self._client.getex(key, ex=touch_ttl))
        return _payload(await self._client.get(key))

    @override
    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        return [_payload(v) for v in await self._client.mget(list(keys))]

    @override
    async def set(self, key: str, value: str, *, ttl: int, version: int) -> bool:
        return bool(await self._set_script(keys=[key], args=[value, version, ttl]))

    @override
    async def touch(self, key: str, *, ttl: int) -> None:
        await self._client.expire(key, ttl)

    @override
    async def delete(self, *keys: str) -> None:
        if keys:
            await self._client.delete(*keys)

    @override
    async def incr(self, key: str, *, ttl: int) -> int:
        return int(await self._incr_script(keys=[key], args=[ttl]))

    @override
    async def ping(self) -> None:
        await self._client.ping()

    @override
    async def aclose(self) -> None:
        await self._client.aclose()
