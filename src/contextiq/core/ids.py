"""Identifiers: time-ordered UUIDv7 for index locality (RFC 9562 §5.7)."""

from __future__ import annotations

import secrets
from uuid import UUID

import uuid_utils


def new_id() -> UUID:
    """Return a new UUIDv7 as a standard-library UUID."""
    return UUID(bytes=uuid_utils.uuid7().bytes)


def random_token(nbytes: int = 24) -> str:
    """Return a URL-safe random token with `nbytes` of entropy."""
    return secrets.token_urlsafe(nbytes)
