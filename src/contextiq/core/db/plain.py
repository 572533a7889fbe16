"""Plain SQL on the driver connection, for the hottest PostgreSQL reads.

SQLAlchemy's execution path (parameter processing, result typing, greenlet hops) costs about
0.6 ms of CPU per statement on the 2-core bench machine, as much as PostgreSQL spends answering a
`similarity` query. `PlainStatement` runs a fixed statement on the session's asyncpg connection
instead: written with the same `:name` parameters as `sqlalchemy.text`, it is turned once into
asyncpg's `$n` form, and asyncpg keeps it prepared per connection. Rows are asyncpg records
(`row["column"]`, `row[0]`).

Every parameter's type must be clear to PostgreSQL from the statement itself (a comparison with a
column, or a CAST): asyncpg binds values by the types PostgreSQL infers, and an untyped `:x + 1`
is inferred as an integer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from contextiq.core.db.engine import driver_closed
from contextiq.core.errors import Unavailable

__all__ = ["PlainStatement", "driver_connection"]

# `:name`, not `::type` (a cast) nor a `:` inside a word.
_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class PlainStatement:
    """A fixed SQL statement with `:name` parameters, run on an asyncpg connection."""

    __slots__ = ("names", "sql")

    def __init__(self, sql: str) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.sql = _PARAMETER.sub(number, sql)
        self.names = tuple(names)

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `params` (every name of the statement, no other)."""
        missing = set(self.names) - params.keys()
        extra = params.keys() - set(self.names)
        if missing or extra:
            raise ValueError(f"statement parameters: missing {sorted(missing)}, unknown {sorted(extra)}")
        return [params[name] for name in self.names]

    async def fetch(self, conn: Any, params: Mapping[str, Any]) -> list[Any]:
        """Run on the asyncpg connection `conn`; return its records."""
        return list(await conn.fetch(self.sql, *self.arguments(params)))


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under `session` (checked out for the session, as any statement would).

    Raises:
        Unavailable: that connection has closed (PostgreSQL restarted): it is dropped from the pool,
            so that the next request gets a new one.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if driver_closed(driver):
        await connection.invalidate()
        raise Unavailable("the database connection was lost; retry the request")
    return driver
