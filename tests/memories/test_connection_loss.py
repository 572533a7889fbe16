"""Retrieval on PostgreSQL after the server dropped the pooled connections (a restart, a failover).

The fast paths send their statements on the asyncpg connection itself (core/db/plain.py), where
SQLAlchemy cannot see a disconnect and drop the connection: the pool must still not lend a dead one
again and again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from contextiq.core.errors import Unavailable
from contextiq.memories.models import MemoryCreate, RetrieveRequest
from contextiq.runtime import Runtime
from tests.conftest import make_settings, new_tenant

pytestmark = pytest.mark.postgres

SCOPE = {"user_id": "restart"}


async def _drop_connections(url: str) -> int:
    """Terminate every other backend of the test database, as a PostgreSQL restart would."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        killed = await conn.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()) t"
        )
    finally:
        await conn.close()
    await asyncio.sleep(0.3)  # the clients read the server's goodbye
    return int(killed)


async def test_retrieval_recovers_at_once_after_the_pooled_connections_die(
    postgres_url: str, tmp_path: Path
) -> None:
    rt = Runtime(make_settings(tmp_path, postgres_url))
    try:
        tenant = await new_tenant(rt)
        for fact in ("I love hiking in the Alps", "My dog is called Rex", "I work as a nurse in Lyon"):
            await rt.memories.create_memory(
                tenant_id=tenant.id, data=MemoryCreate(scope=SCOPE, fact=fact, topic="USER_PERSONAL_INFO")
            )

        async def retrieve(mode: str) -> list[str]:
            request = RetrieveRequest(scope=SCOPE, query="where does the nurse work", mode=mode)
            found = await rt.memories.retrieve_memories(tenant_id=tenant.id, request=request)
            return [m.memory.fact for m in found.memories]

        modes = ("similarity", "keyword", "hybrid")
        before = {mode: await retrieve(mode) for mode in modes}
        await asyncio.gather(*(retrieve(mode) for mode in modes * 3))  # several pooled connections
        assert await _drop_connections(postgres_url) >= 1

        # Every fast path checks its connection out anew: none of them sees a dead one.
        for _ in range(3):
            assert {mode: await retrieve(mode) for mode in modes} == before

        # The general path (a confidence boost) reads on its session's connection: a dead one is
        # dropped with a 503 the first time at most, and the pool has a live one for the retry.
        await asyncio.gather(*(retrieve(mode) for mode in modes * 3))
        await _drop_connections(postgres_url)
        request = RetrieveRequest(scope=SCOPE, query="where does the nurse work", confidence_weight=0.5)
        failures = 0
        for _ in range(12):
            try:
                found = await rt.memories.retrieve_memories(tenant_id=tenant.id, request=request)
            except Unavailable:
                failures += 1
                continue
            assert found.memories[0].memory.fact == "I work as a nurse in Lyon"
        assert failures <= rt.settings.db_pool_size
    finally:
        await rt.aclose()
