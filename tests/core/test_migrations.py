"""One set of revisions for both dialects: up, down, check, dry run, concurrent upgrades, partitions."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from contextiq.core.db import migrate
from tests.conftest import empty_postgres


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.sqlite),
                        pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/m.db"
        return
    yield from _empty_postgres()


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    yield from _empty_postgres()


def _empty_postgres() -> Iterator[str]:
    with empty_postgres("ciq_mig") as url:
        yield url


def test_upgrade_check_downgrade_round_trip(empty_url: str) -> None:
    assert asyncio.run(migrate.current_revision(empty_url)) is None
    migrate.upgrade(empty_url)
    assert asyncio.run(migrate.current_revision(empty_url)) == migrate.head_revision()
    assert asyncio.run(migrate.schema_diff(empty_url)) == []
    migrate.downgrade(empty_url, "base")
    assert asyncio.run(migrate.current_revision(empty_url)) is None
    migrate.upgrade(empty_url)
    assert asyncio.run(migrate.schema_diff(empty_url)) == []


def test_dry_run_prints_sql_and_changes_nothing(empty_url: str) -> None:
    sql = migrate.upgrade(empty_url, sql=True)
    assert "CREATE TABLE sessions" in sql and "CREATE TABLE events" in sql
    assert asyncio.run(migrate.current_revision(empty_url)) is None


@pytest.mark.postgres
def test_concurrent_upgrades_on_postgres_apply_once(empty_pg_url: str) -> None:
    empty_url = empty_pg_url
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate.upgrade(empty_url)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert asyncio.run(migrate.current_revision(empty_url)) == migrate.head_revision()


@pytest.mark.postgres
def test_postgres_schema_has_partitions_checks_and_extensions(empty_pg_url: str) -> None:
    empty_url = empty_pg_url
    migrate.upgrade(empty_url)

    async def inspect() -> tuple[object, ...]:
        engine = create_async_engine(empty_url)
        try:
            async with engine.connect() as conn:
                parts = (await conn.execute(text(
                    "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"))).scalar()
                exts = set((await conn.execute(text("SELECT extname FROM pg_extension"))).scalars())
                org = uuid.uuid4()
                await conn.execute(text(
                    "INSERT INTO organizations (id, name, slug, settings, max_agents, max_executions_per_month, "
                    "max_team_members, created_at, updated_at) VALUES (:id, 'o', :slug, '{}', 1, 1, 1, now(), now())"),
                    {"id": org, "slug": f"s{org.hex[:8]}"})
                try:
                    await conn.execute(text(
                        "INSERT INTO sessions (id, tenant_id, user_id, scope, state, metadata, created_at, updated_at, "
                        "is_active, version, last_sequence) VALUES (gen_random_uuid(), :org, 'u', "
                        "'{\"a\":\"1\",\"b\":\"1\",\"c\":\"1\",\"d\":\"1\",\"e\":\"1\",\"f\":\"1\"}', '{}', '{}', "
                        "now(), now(), true, 1, 0)"), {"org": org})
                    rejected = False
                except Exception:
                    rejected = True
                return parts, exts, rejected
        finally:
            await engine.dispose()

    parts, exts, rejected = asyncio.run(inspect())
    assert isinstance(parts, int) and parts >= 5  # default + months around today
    assert {"uuid-ossp", "pgcrypto", "pg_trgm", "btree_gin"} <= exts  # type: ignore[operator]
    assert rejected, "a 6-key scope must violate the CHECK constraint"
