"""Type aliases shared by every layer."""

from __future__ import annotations

from typing import Any, TypeAlias

JSON: TypeAlias = dict[str, Any]
"""A JSON object as it travels through the API and into JSON/JSONB columns."""

Scope: TypeAlias = dict[str, str]
"""A memory scope: at most five string pairs (seed 000 §2.1)."""
