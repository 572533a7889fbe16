"""Schema migrations (Alembic) run programmatically: upgrade, downgrade, current, history, check.

The revision files live in `contextiq/migrations/versions` and run unchanged on SQLite and
PostgreSQL. On PostgreSQL each run holds a transaction-scoped advisory lock, so concurrent upgrades
(several servers starting at once) apply each revision exactly once.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

ADVISORY_LOCK_ID = 7_271_828_182  # any constant shared by every ContextIQ process


def alembic_config(url: str, *, output: io.StringIO | None = None) -> Config:
    """Return an Alembic config pointing at ContextIQ's migrations and `url`."""
    cfg = Config(stdout=output, output_buffer=output) if output is not None else Config()
    cfg.set_main_option("script_location", "contextiq:migrations")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# Alembic's `context` and `op` are module-global proxies: two migrations running at once in one
# process (threads) would each drive the other's connection and deadlock. Processes are kept apart
# by the advisory lock; threads of one process by this lock.
_PROCESS_LOCK = threading.Lock()


def _run(url: str, action: Callable[[Config], None]) -> str:
    out = io.StringIO()
    cfg = alembic_config(url, output=out)
    with _PROCESS_LOCK:
        action(cfg)
    return out.getvalue()


def upgrade(url: str, revision: str = "head", *, sql: bool = False) -> str:
    """Upgrade the schema to `revision`; with `sql`, return the SQL instead of running it."""
    return _run(url, lambda cfg: command.upgrade(cfg, revision, sql=sql))


def downgrade(url: str, revision: str = "-1", *, sql: bool = False) -> str:
    """Downgrade the schema to `revision` (default: one step back)."""
    if sql and ":" not in revision:
        current = asyncio.run(current_revision(url))
        revision = f"{current or 'base'}:{revision}"
    return _run(url, lambda cfg: command.downgrade(cfg, revision, sql=sql))


def history(url: str) -> str:
    """Return the revision history, newest first."""
    return _run(url, lambda cfg: command.history(cfg, verbose=False))


def head_revision() -> str | None:
    """Return the newest revision the code knows."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return script.get_current_head()


async def current_revision(url: str) -> str | None:
    """Return the revision the database is at (None for an empty database)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()


async def schema_diff(url: str) -> list[Any]:
    """Return the differences between the tables in code and the database (empty when in sync)."""
    from alembic.autogenerate import compare_metadata

    from contextiq.migrations.metadata import target_metadata

    def compare(conn: Connection) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False, "include_object": include_object})
        return list(compare_metadata(ctx, target_metadata()))

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Leave out what Alembic cannot compare: partitions, Alembic's own table, search structures."""
    if reflected and compare_to is None and name is not None and _is_search_structure(name):
        return False  # made by migrations for core/search: FTS5 tables (and shadows), tsvector/trgm indexes
    if type_ == "table" and name is not None:
        if name == "alembic_version":
            return False
        if reflected and compare_to is None and ("_20" in name or name.endswith("_default")):
            return False  # monthly and default partitions of a partitioned table
    return True


def _is_search_structure(name: str) -> bool:
    return name.endswith(("_fts", "_trgm")) or "_fts_" in name
