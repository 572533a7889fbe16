"""The memories schema: in sync with the tables on both dialects, and PostgreSQL's CHECKs hold."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from contextiq.core.db import migrate
from contextiq.core.search.keyword import keyword_search
from contextiq.memories.store import MEMORY_TEXT
from contextiq.memories.tables import MemoryRow
from contextiq.runtime import Runtime
from tests.conftest import make_settings, new_tenant


async def test_schema_matches_the_tables(database_url: str) -> None:
    assert await migrate.schema_diff(database_url) == []


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("scope", '{"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6"}'),
        ("fact", "x" * 2001),
        ("confidence", 1.5),
        ("source_type", "guessed"),
    ],
)
async def test_postgres_checks_refuse_what_the_seed_forbids(postgres_url: str, column: str, value: object) -> None:
    engine = create_async_engine(postgres_url)
    row: dict[str, object] = {
        "scope": '{"user_id":"u1"}', "fact": "ok", "confidence": 1.0, "source_type": "direct",
    }
    row[column] = value
    try:
        async with engine.begin() as conn:
            tenant = uuid.uuid4()
            await conn.execute(
                text("INSERT INTO organizations (id, name, slug, settings, max_agents, max_executions_per_month, "
                     "max_team_members, created_at, updated_at) VALUES (:id, 'o', :slug, '{}', 1, 1, 1, now(), now())"),
                {"id": tenant, "slug": f"o-{tenant.hex[:12]}"},
            )
            bank = uuid.uuid4()
            await conn.execute(
                text("INSERT INTO memory_bank_configs (id, tenant_id, name, memory_topics, ttl_config, "
                     "similarity_search_config, generation_config, enable_revisions, scope_keys, metadata, "
                     "created_at, updated_at, is_active) VALUES (:id, :t, 'b', '[]', '{}', '{}', '{}', true, "
                     "ARRAY['user_id'], '{}', now(), now(), true)"),
                {"id": bank, "t": tenant},
            )
            with pytest.raises(IntegrityError):
                await conn.execute(
                    text("INSERT INTO memories (id, tenant_id, bank_id, scope, scope_key, fact, topic, confidence, "
                         "source_type, metadata, created_at, updated_at, revision_count, is_deleted, revision, "
                         "valid_from) VALUES (:id, :t, :b, CAST(:scope AS jsonb), 'k', :fact, 'USER_PREFERENCES', "
                         ":confidence, :source_type, '{}', now(), now(), 0, false, 1, now())"),
                    {"id": uuid.uuid4(), "t": tenant, "b": bank, **row},
                )
            await conn.rollback()
    finally:
        await engine.dispose()


async def test_full_text_index_follows_inserts_updates_and_deletes(database_url: str, tmp_path: Path) -> None:
    """FTS5 triggers on SQLite, an expression index on PostgreSQL: the index never goes stale."""
    rt = Runtime(make_settings(tmp_path, database_url))
    try:
        tenant = await new_tenant(rt)
        bank = await rt.memories.get_bank(tenant_id=tenant.id, bank_id=None)

        async def search(query: str) -> list[uuid.UUID]:
            async with rt.db.read() as session:
                hits = await keyword_search(
                    session, collection=MEMORY_TEXT, query=query, where=[MemoryRow.tenant_id == tenant.id], limit=5
                )
            return [h[0] for h in hits]

        async with rt.db.write() as session:
            row = MemoryRow(
                tenant_id=tenant.id, bank_id=bank.id, scope={"user_id": "u1"}, scope_key='{"user_id":"u1"}',
                fact="I ride a zebra to work.", topic="USER_PERSONAL_INFO", source_type="direct",
            )
            session.add(row)
        assert await search("zebra") == [row.id]
        async with rt.db.write() as session:
            await session.execute(update(MemoryRow).where(MemoryRow.id == row.id).values(fact="I ride a horse."))
        assert await search("zebra") == []
        assert await search("horses") == [row.id]  # stemmed on both dialects
        async with rt.db.write() as session:
            await session.execute(delete(MemoryRow).where(MemoryRow.id == row.id))
        assert await search("horse") == []
    finally:
        await rt.aclose()
