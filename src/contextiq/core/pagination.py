"""Opaque cursors for keyset pagination."""

from __future__ import annotations

import base64
import json
from typing import Any

from contextiq.core.errors import Invalid

MAX_LIMIT = 1000


def encode_cursor(*values: Any) -> str:
    """Encode the sort key of the last item on a page as an opaque cursor."""
    raw = json.dumps(list(values), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """Decode a cursor made by `encode_cursor`; raise Invalid naming `cursor` if it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError) as exc:
        raise Invalid("query.cursor", "not a cursor returned by this API") from exc
    if not isinstance(values, list) or len(values) != arity:
        raise Invalid("query.cursor", "not a cursor returned by this API")
    return values


def check_limit(limit: int) -> None:
    """Raise Invalid naming `limit` unless it is a page size from 1 to MAX_LIMIT."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid("query.limit", f"must be between 1 and {MAX_LIMIT}")


def decode_int_cursor(cursor: str | None) -> int | None:
    """Decode a cursor holding one integer position (a sequence or revision number); None if absent."""
    if not cursor:
        return None
    (value,) = decode_cursor(cursor, 1)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid("query.cursor", "not a cursor returned by this API")
    return value
