"""The engine and its transactions: `write()` for changes, `read()` for queries.

SQLite allows one writer at a time. Writers use `BEGIN IMMEDIATE` (so a transaction never has to
upgrade its lock half-way, which is where "database is locked" comes from) through a one-connection
pool, so in-process writers queue for the pool instead of spinning on the file lock; readers use
their own pool and, in WAL mode, never wait for the writer. PostgreSQL uses one pool for both; its
reads run in autocommit mode (no BEGIN/COMMIT round trips; READ COMMITTED gives each statement its
own snapshot either way).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Seconds after which a pooled connection is replaced (`pool_recycle`; the lent ones too).
POOL_RECYCLE_SECONDS = 1800
#: Driver connections kept checked out between `driver_connection()` calls, ready to lend again.
LENT_IDLE_MAX = 4


class Database:
    """A connection to the system of record, with the transactions every service uses."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        echo: bool = False,
        null_pool: bool = False,
    ) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self._pool_capacity = pool_size + max_overflow + 1
        if self.dialect == "sqlite":
            self._prepare_sqlite_path(url)
            self.engine = self._sqlite_engine(url, echo=echo, write=False)
            self._write_engine = self._sqlite_engine(url, echo=echo, write=True)
        else:
            # No pre-ping: it costs three round trips per checkout; a dropped connection is detected
            # on use and the pool is invalidated instead, and pool_recycle retires old ones.
            kwargs: dict[str, Any] = {"echo": echo, "pool_recycle": POOL_RECYCLE_SECONDS}
            if null_pool:
                kwargs["poolclass"] = NullPool
            else:
                kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=60)
            self.engine = create_async_engine(url, **kwargs)
            self._write_engine = self.engine
        reads: AsyncEngine = self.engine
        if self.dialect == "postgresql":
            # Reads need no BEGIN/COMMIT: under READ COMMITTED each statement takes its own snapshot
            # in a transaction too, so autocommit reads see the same data and save two round trips.
            reads = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._reader = async_sessionmaker(reads, expire_on_commit=False, autoflush=False)
        self._writer = async_sessionmaker(self._write_engine, expire_on_commit=False, autoflush=False)
        # Idle lent connections (`driver_connection`): (pool connection, driver connection, checked out at).
        self._lent_idle: list[tuple[AsyncConnection, Any, float]] = []

    @property
    def is_postgres(self) -> bool:
        """Whether this is PostgreSQL (row locks, JSONB, pgvector) rather than SQLite."""
        return self.dialect == "postgresql"

    @staticmethod
    def _prepare_sqlite_path(url: str) -> None:
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _sqlite_engine(url: str, *, echo: bool, write: bool) -> AsyncEngine:
        pool: dict[str, Any] = (
            {"pool_size": 1, "max_overflow": 0, "pool_timeout": 300}
            if write
            else {"pool_size": 8, "max_overflow": 8, "pool_timeout": 60}
        )
        engine = create_async_engine(url, echo=echo, **pool)
        begin = "BEGIN IMMEDIATE" if write else "BEGIN"

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take transaction control from the driver so that BEGIN is ours (SQLAlchemy's
            # documented recipe for pysqlite/aiosqlite).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return engine

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """Open a write transaction: committed when the block ends, rolled back if it raises."""
        async with self._writer() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """Open a read-only unit of work."""
        async with self._reader() as session, session.begin():
            yield session

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[Any]:
        """Lend the pooled driver connection (asyncpg on PostgreSQL) for hot paths written in plain SQL.

        Statements run in autocommit mode, so a single statement is its own transaction.

        SQLAlchemy drops a connection it sees fail with a disconnect, but it does not see statements
        sent on the driver connection itself: so a connection found closed at checkout (PostgreSQL
        restarted meanwhile) is dropped and another taken, and one that closes while lent is dropped
        from the pool before the error goes on.

        A connection given back cleanly (no error, no open transaction) is kept checked out, up to
        `LENT_IDLE_MAX` of them, and lent again by the next call: a checkout and checkin through
        SQLAlchemy's pool cost about 0.3 ms of CPU, as much as the statement a hot path sends. They
        are replaced after `POOL_RECYCLE_SECONDS`, as the pool replaces its own.
        """
        conn, driver, since = await self._lend()
        try:
            yield driver
        except BaseException:
            if driver_closed(driver):
                await conn.invalidate()
            await conn.close()
            raise
        if _in_transaction(driver):  # left open by the borrower: the pool cannot reset what it did not begin
            await conn.invalidate()
            await conn.close()
        elif (
            self.is_postgres  # SQLite's writes have one connection: it must go back
            and len(self._lent_idle) < LENT_IDLE_MAX
            and time.monotonic() - since < POOL_RECYCLE_SECONDS
            and not driver_closed(driver)
        ):
            self._lent_idle.append((conn, driver, since))
        else:
            await conn.close()

    async def _lend(self) -> tuple[AsyncConnection, Any, float]:
        """An idle lent connection that is still open (newest first), else one from the pool."""
        while self._lent_idle:
            conn, driver, since = self._lent_idle.pop()
            if driver_closed(driver):
                await conn.invalidate()
                await conn.close()
                continue
            return conn, driver, since
        conn = await self._open_connection()
        raw = await conn.get_raw_connection()
        return conn, raw.driver_connection, time.monotonic()

    async def _open_connection(self) -> AsyncConnection:
        """Check a connection out of the pool, dropping those whose driver connection has closed."""
        for _ in range(self._pool_capacity):
            conn = await self._write_engine.connect()
            raw = await conn.get_raw_connection()
            if not driver_closed(raw.driver_connection):
                return conn
            await conn.invalidate()
            await conn.close()
        return await self._write_engine.connect()  # every pooled one was closed: this one is new

    async def ping(self) -> None:
        """Run a trivial query; raises if the database is unreachable."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def pool_status(self) -> dict[str, int]:
        """Return the reader pool's size, its connections in use, and those kept idle for
        `driver_connection()` (checked out of the pool, but not in use) (for /metrics)."""
        pool: Any = self.engine.pool
        idle = len(self._lent_idle)
        try:
            return {"size": int(pool.size()), "checked_out": int(pool.checkedout()) - idle, "idle_lent": idle}
        except AttributeError:
            return {"size": 0, "checked_out": 0, "idle_lent": idle}

    async def aclose(self) -> None:
        """Dispose of every pooled connection."""
        while self._lent_idle:
            conn, _driver, _since = self._lent_idle.pop()
            await conn.close()
        await self.engine.dispose()
        if self._write_engine is not self.engine:
            await self._write_engine.dispose()


def _in_transaction(driver: Any) -> bool:
    """Whether a driver connection is inside a transaction (asyncpg's `is_in_transaction`)."""
    check = getattr(driver, "is_in_transaction", None)
    return bool(check()) if callable(check) else False


def driver_closed(driver: Any) -> bool:
    """Whether a driver connection has closed (asyncpg's `is_closed`; others are taken as open)."""
    is_closed = getattr(driver, "is_closed", None)
    return bool(is_closed()) if callable(is_closed) else False
