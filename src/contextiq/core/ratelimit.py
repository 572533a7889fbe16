"""Fixed-window rate limits per API key per minute (seed 000 §6.4 key format `ratelimit:{key}:{minute}`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from contextiq.core.cache.base import Cache


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one request against a limit, with what the X-RateLimit-* headers report."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # unix seconds when the window ends

    @property
    def retry_after(self) -> int:
        """Seconds until the window resets (at least 1)."""
        return max(1, self.reset_at - int(time.time()))

    def headers(self) -> dict[str, str]:
        """Return the X-RateLimit-* headers (and Retry-After when refused)."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter:
    """Counts requests per key and minute in the cache (Redis, so limits hold across workers)."""

    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    async def hit(self, *, key_id: str, limit: int) -> RateDecision:
        """Count one request for `key_id` and decide whether it is within `limit` per minute."""
        now = time.time()
        minute = int(now // 60)
        count = await self._cache.incr(f"ratelimit:{key_id}:{minute}", ttl=60)
        reset_at = (minute + 1) * 60
        return RateDecision(
            allowed=count <= limit, limit=limit, remaining=max(0, limit - count), reset_at=reset_at
        )
