"""What the HTTP clients of OpenAI-compatible services share: which answers to retry, how long to wait."""

from __future__ import annotations

import math
import random

import httpx

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
"""Statuses worth another try: timeouts, rate limits and server errors."""

MAX_RETRY_AFTER = 30.0
"""Longest wait honoured from a Retry-After header, in seconds."""


def retry_delay(attempt: int, retry_after: str | None, *, backoff: float) -> float:
    """Return the wait before try `attempt + 1`: the server's Retry-After if sane, else jittered backoff."""
    if retry_after is not None:
        try:
            seconds = float(retry_after)
        except ValueError:
            seconds = -1.0
        if math.isfinite(seconds) and seconds >= 0:
            return min(seconds, MAX_RETRY_AFTER)
    base: float = backoff * 2 ** (attempt - 1)
    return base * (1 + 0.1 * random.random())  # jitter, not security


def excerpt(response: httpx.Response, limit: int = 300) -> str:
    """Return the start of a response body on one line, for error messages."""
    text = response.text.strip().replace("\n", " ")
    if len(text) > limit:
        text = text[:limit] + "..."
    return text or "(empty body)"
