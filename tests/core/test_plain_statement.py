"""`PlainStatement`: `:name` parameters become asyncpg's `$n`; casts and repeats are handled."""

from __future__ import annotations

import pytest

from contextiq.core.db.plain import PlainStatement


def test_names_become_numbers_in_first_use_order_and_repeat() -> None:
    stmt = PlainStatement(
        "SELECT 1 - (e <=> CAST(CAST(:vector AS real[]) AS vector)) FROM t "
        "WHERE a = :tenant_id AND b::text = :scope ORDER BY e <=> CAST(CAST(:vector AS real[]) AS vector) LIMIT :limit"
    )
    assert stmt.names == ("vector", "tenant_id", "scope", "limit")
    assert stmt.sql.count("$1") == 2
    assert "b::text = $3" in stmt.sql  # a cast is not a parameter
    assert stmt.sql.endswith("LIMIT $4")
    assert stmt.arguments({"limit": 5, "scope": "s", "tenant_id": "t", "vector": [0.5]}) == [[0.5], "t", "s", 5]


def test_missing_or_unknown_parameters_are_refused() -> None:
    stmt = PlainStatement("SELECT :a, :b")
    with pytest.raises(ValueError, match=r"missing \['b'\], unknown \['c'\]"):
        stmt.arguments({"a": 1, "c": 2})
