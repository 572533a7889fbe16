"""The two ways a client reaches ContextIQ: over HTTP, or in-process on a Runtime it owns."""

from __future__ import annotations

from contextiq.sdk.backends.base import Backend

__all__ = ["Backend"]
