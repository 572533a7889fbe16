"""Scopes: validation and the canonical `scope_key` string used for exact matching."""

from __future__ import annotations

import json
from collections.abc import Mapping

MAX_SCOPE_KEYS = 5
MAX_SCOPE_PART = 255


def scope_problem(scope: Mapping[str, object]) -> str | None:
    """Return why `scope` is not a valid scope, or None when it is."""
    if len(scope) > MAX_SCOPE_KEYS:
        return f"a scope has at most {MAX_SCOPE_KEYS} keys, got {len(scope)}"
    for key, value in scope.items():
        if not key or len(key) > MAX_SCOPE_PART:
            return f"scope keys are 1 to {MAX_SCOPE_PART} characters, got {key!r}"
        if not isinstance(value, str):
            return f"scope value of {key!r} must be a string"
        if len(value) > MAX_SCOPE_PART:
            return f"scope value of {key!r} is longer than {MAX_SCOPE_PART} characters"
    return None


def scope_key(scope: Mapping[str, str]) -> str:
    """Return the canonical string of a scope: sorted keys, compact JSON."""
    return json.dumps(dict(scope), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def describe_scope(scope: Mapping[str, str]) -> str:
    """Return a short human form of a scope for messages: `{user_id=u1}`."""
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(scope.items())) + "}"
