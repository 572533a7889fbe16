"""Monthly range partitions on PostgreSQL for time-series tables (ARCHITECTURE §2 "Time series").

Each partitioned table has a DEFAULT partition, so a row whose month has no partition yet (an import
of an old conversation, say) is still stored; the maintenance job creates the coming months ahead.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)

PARTITIONED_TABLES = ("events",)


def month_start(day: date, offset: int = 0) -> date:
    """Return the first day of the month `offset` months from `day`'s month."""
    index = day.year * 12 + (day.month - 1) + offset
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    """Return the partition table name for a month: `events_2026_11`."""
    return f"{table}_{month.year:04d}_{month.month:02d}"


async def ensure_monthly_partitions(
    conn: AsyncConnection, *, table: str, today: datetime, months_back: int = 1, months_ahead: int = 3
) -> list[str]:
    """Create the monthly partitions of `table` around `today` that do not exist yet; return their names."""
    created: list[str] = []
    for offset in range(-months_back, months_ahead + 1):
        lower = month_start(today.date(), offset)
        upper = month_start(today.date(), offset + 1)
        name = partition_name(table, lower)
        exists = await conn.scalar(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name})
        if exists:
            continue
        statement = (
            f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" '
            f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')"
        )
        savepoint = await conn.begin_nested()
        try:
            await conn.execute(text(statement))
        except Exception as exc:  # rows of that month already sit in the default partition
            await savepoint.rollback()
            log.warning("partition %s not created: %s", name, exc)
            continue
        await savepoint.commit()
        created.append(name)
    return created



def monthly_partition_ddl(*, table: str, today: datetime, months_back: int = 1, months_ahead: int = 3) -> list[str]:
    """Return CREATE TABLE … PARTITION OF statements for the months around `today`."""
    statements = []
    for offset in range(-months_back, months_ahead + 1):
        lower = month_start(today.date(), offset)
        upper = month_start(today.date(), offset + 1)
        statements.append(
            f'CREATE TABLE IF NOT EXISTS "{partition_name(table, lower)}" PARTITION OF "{table}" '
            f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')"
        )
    return statements
