"""`Database.driver_connection()` on PostgreSQL: lent connections are kept for the next borrower
only when given back clean, and never outlive the pool's recycle age."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from contextiq.core.db import engine as engine_module
from contextiq.core.db.engine import LENT_IDLE_MAX, Database


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(postgres_url, pool_size=2, max_overflow=8)
    yield database
    await database.aclose()


async def _backend(driver: object) -> int:
    return int(await driver.fetchval("SELECT pg_backend_pid()"))  # type: ignore[attr-defined]


async def test_a_connection_given_back_clean_is_lent_again(db: Database) -> None:
    async with db.driver_connection() as first:
        pid = await _backend(first)
    async with db.driver_connection() as again:
        assert again is first and await _backend(again) == pid


async def test_at_most_lent_idle_max_are_kept_and_the_rest_go_back_to_the_pool(db: Database) -> None:
    borrowed = []
    managers = [db.driver_connection() for _ in range(LENT_IDLE_MAX + 2)]
    for manager in managers:
        borrowed.append(await manager.__aenter__())
    assert len({id(d) for d in borrowed}) == LENT_IDLE_MAX + 2
    for manager in managers:
        await manager.__aexit__(None, None, None)
    assert len(db._lent_idle) == LENT_IDLE_MAX
    assert db.pool_status()["checked_out"] == 0  # kept, not in use
    assert db.pool_status()["idle_lent"] == LENT_IDLE_MAX
    async with db.driver_connection():
        assert db.pool_status()["checked_out"] == 1
        assert db.pool_status()["idle_lent"] == LENT_IDLE_MAX - 1
    await db.aclose()
    assert db._lent_idle == []
    assert (db.pool_status()["checked_out"], db.pool_status()["idle_lent"]) == (0, 0)


async def test_a_connection_that_raised_is_given_back_to_the_pool(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.driver_connection() as driver:
            await _backend(driver)
            raise RuntimeError("the borrower failed")
    assert db._lent_idle == []
    async with db.driver_connection() as driver:  # the pool's connection still works
        assert await driver.fetchval("SELECT 1") == 1


async def test_a_connection_left_in_a_transaction_is_dropped(db: Database) -> None:
    async with db.driver_connection() as driver:
        pid = await _backend(driver)
        await driver.execute("BEGIN")
        await driver.execute("CREATE TEMP TABLE left_behind (x int)")
    assert db._lent_idle == []
    async with db.driver_connection() as driver:
        assert await _backend(driver) != pid  # not that session: its transaction died with it
        assert await driver.fetchval("SELECT to_regclass('pg_temp.left_behind') IS NULL")
        assert not driver.is_in_transaction()


async def test_lent_connections_are_recycled_at_the_pools_age(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "POOL_RECYCLE_SECONDS", 0.0)
    async with db.driver_connection() as driver:
        await _backend(driver)
    assert db._lent_idle == []


async def test_an_idle_lent_connection_closed_meanwhile_is_replaced(db: Database) -> None:
    async with db.driver_connection() as driver:
        await _backend(driver)
    await driver.close()  # as when PostgreSQL restarts
    async with db.driver_connection() as fresh:
        assert fresh is not driver and await fresh.fetchval("SELECT 1") == 1


async def test_sqlite_gives_its_one_write_connection_back(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}")
    try:
        async with database.driver_connection() as driver:
            assert driver is not None
        assert database._lent_idle == []
        async with database.write() as session:  # would wait for the pool's only connection otherwise
            assert (await session.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await database.aclose()
