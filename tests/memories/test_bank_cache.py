"""Bank reads come from the `bank:` cache and are never stale after a bank write, across processes."""

from __future__ import annotations

import pytest

from contextiq.core.errors import NotFound
from contextiq.memories.models import MemoryBankCreate, MemoryBankUpdate, RetrievalConfig, RetrieveRequest
from contextiq.runtime import Runtime
from tests.conftest import new_tenant


async def test_bank_writes_are_seen_at_once_by_every_process(
    two_processes: tuple[Runtime, Runtime], cache_url: str | None
) -> None:
    a, b = two_processes
    tenant = await new_tenant(a)
    bank = await a.memories.create_bank(tenant_id=tenant.id, data=MemoryBankCreate(name="notes"))
    assert (await b.memories.get_bank(tenant_id=tenant.id, bank_id=bank.id)).name == "notes"  # b caches it
    update = MemoryBankUpdate(retrieval_config=RetrievalConfig(keyword_weight=0.9))
    await a.memories.update_bank(tenant_id=tenant.id, bank_id=bank.id, data=update)
    if cache_url is not None:  # a shared cache: b sees a's write at once
        seen = await b.memories.get_bank(tenant_id=tenant.id, bank_id=bank.id)
        assert seen.retrieval_config.keyword_weight == 0.9
    assert (await a.memories.get_bank(tenant_id=tenant.id, bank_id=bank.id)).retrieval_config.keyword_weight == 0.9
    await a.memories.delete_bank(tenant_id=tenant.id, bank_id=bank.id)
    with pytest.raises(NotFound):
        await a.memories.get_bank(tenant_id=tenant.id, bank_id=bank.id)
    if cache_url is not None:
        with pytest.raises(NotFound):
            await b.memories.get_bank(tenant_id=tenant.id, bank_id=bank.id)


async def test_a_reader_that_read_before_a_write_cannot_cache_the_old_bank(runtime: Runtime) -> None:
    import contextiq.memories.service as service

    tenant = await new_tenant(runtime)
    bank = await runtime.memories.create_bank(tenant_id=tenant.id, data=MemoryBankCreate(name="notes"))
    old = await runtime.memories.get_bank(tenant_id=tenant.id, bank_id=bank.id)
    await runtime.memories.update_bank(tenant_id=tenant.id, bank_id=bank.id, data=MemoryBankUpdate(name="renamed"))
    # A slow reader now writes the snapshot it read before the update: the cache keeps the newer one.
    key = service._bank_key(tenant.id, bank.id)
    stored = await runtime.cache.set(key, old.model_dump_json(), ttl=60, version=service._bank_version(old))
    assert stored is False
    assert (await runtime.memories.get_bank(tenant_id=tenant.id, bank_id=bank.id)).name == "renamed"


async def test_renaming_the_default_bank_is_seen_by_default_reads(runtime: Runtime) -> None:
    tenant = await new_tenant(runtime)
    default = await runtime.memories.get_bank(tenant_id=tenant.id, bank_id=None)
    request = RetrieveRequest(scope={"user_id": "u"}, query="anything")
    assert (await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=request)).memories == []
    await runtime.memories.update_bank(tenant_id=tenant.id, bank_id=default.id, data=MemoryBankUpdate(name="old"))
    fresh = await runtime.memories.get_bank(tenant_id=tenant.id, bank_id=None)  # a new `default` is made
    assert fresh.id != default.id and fresh.name == "default"


async def test_a_cached_bank_is_parsed_once_until_it_changes(runtime: Runtime) -> None:
    tenant = await new_tenant(runtime)
    bank = await runtime.memories.create_bank(tenant_id=tenant.id, data=MemoryBankCreate(name="notes"))
    service = runtime.memories
    await service.get_bank(tenant_id=tenant.id, bank_id=bank.id)  # read from the cache (or the database)
    shared = await service._shared_bank(tenant.id, bank.id)
    assert await service._shared_bank(tenant.id, bank.id) is shared  # one parsed snapshot for the reads
    # A caller's copy is its own: changing it, nested fields included, changes nothing else.
    mine = await service.get_bank(tenant_id=tenant.id, bank_id=bank.id)
    assert mine is not shared and mine == shared
    mine.scope_keys.append("evil")
    mine.retrieval_config.keyword_weight = 0.99
    assert (await service.get_bank(tenant_id=tenant.id, bank_id=bank.id)).scope_keys == shared.scope_keys
    assert shared.retrieval_config.keyword_weight != 0.99 and "evil" not in shared.scope_keys
    update = MemoryBankUpdate(retrieval_config=RetrievalConfig(keyword_weight=0.9))
    await service.update_bank(tenant_id=tenant.id, bank_id=bank.id, data=update)
    after = await service._shared_bank(tenant.id, bank.id)
    assert after is not shared and after.retrieval_config.keyword_weight == 0.9
    assert after.retrieval_config.rerank_config().keyword_weight == 0.9
