"""Routes of memory banks and memories: parse, call one service method, return.

Custom verbs follow Google's AIP-136 (`/v1/memories:retrieve`, `/v1/memories/{id}:rollback`); the
`{memory_id:uuid}` converter keeps `/v1/memories/{id}` from capturing them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from contextiq.api.deps import IdempotencyKey, MemoriesRead, MemoriesWrite, RuntimeDep
from contextiq.core.errors import Invalid
from contextiq.memories.models import (
    ImportResult,
    Memory,
    MemoryBank,
    MemoryBankCreate,
    MemoryBankList,
    MemoryBankUpdate,
    MemoryCreate,
    MemoryFilter,
    MemoryPage,
    MemoryRevisionPage,
    MemoryUpdate,
    RetrieveRequest,
    RetrieveResponse,
    RollbackRequest,
    check_import_size,
)
from contextiq.memories.service import parse_scope_param

router = APIRouter(prefix="/v1", tags=["memories"])
Limit = Annotated[int, Query(ge=1, le=1000)]

# -- memory banks ------------------------------------------------------------------------------------


@router.post("/memory-banks", status_code=status.HTTP_201_CREATED, tags=["memory-banks"])
async def create_memory_bank(
    body: MemoryBankCreate, tenant: MemoriesWrite, runtime: RuntimeDep, response: Response
) -> MemoryBank:
    bank = await runtime.memories.create_bank(tenant_id=tenant.id, data=body)
    response.headers["Location"] = f"/v1/memory-banks/{bank.id}"
    return bank


@router.get("/memory-banks", tags=["memory-banks"])
async def list_memory_banks(tenant: MemoriesRead, runtime: RuntimeDep) -> MemoryBankList:
    return await runtime.memories.list_banks(tenant_id=tenant.id)


@router.get("/memory-banks/{bank_id}", tags=["memory-banks"])
async def get_memory_bank(bank_id: UUID, tenant: MemoriesRead, runtime: RuntimeDep) -> MemoryBank:
    return await runtime.memories.get_bank(tenant_id=tenant.id, bank_id=bank_id)


@router.patch("/memory-banks/{bank_id}", tags=["memory-banks"])
async def update_memory_bank(
    bank_id: UUID, body: MemoryBankUpdate, tenant: MemoriesWrite, runtime: RuntimeDep
) -> MemoryBank:
    return await runtime.memories.update_bank(tenant_id=tenant.id, bank_id=bank_id, data=body)


@router.delete("/memory-banks/{bank_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["memory-banks"])
async def delete_memory_bank(
    bank_id: UUID, tenant: MemoriesWrite, runtime: RuntimeDep, force: bool = False
) -> Response:
    await runtime.memories.delete_bank(tenant_id=tenant.id, bank_id=bank_id, force=force)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- memories: collection and custom verbs --------------------------------------------------------------


@router.post("/memories", status_code=status.HTTP_201_CREATED)
async def create_memory(
    body: MemoryCreate, tenant: MemoriesWrite, runtime: RuntimeDep, response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Memory:
    memory = await runtime.memories.create_memory(tenant_id=tenant.id, data=body, idempotency_key=idempotency_key)
    response.headers["Location"] = f"/v1/memories/{memory.id}"
    return memory


@router.get("/memories")
async def list_memories(
    tenant: MemoriesRead,
    runtime: RuntimeDep,
    scope: Annotated[str | None, Query(description='URL-encoded JSON, e.g. {"user_id":"u1"}')] = None,
    bank_id: UUID | None = None,
    topic: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    event_time_after: datetime | None = None,
    event_time_before: datetime | None = None,
    as_of: datetime | None = None,
    include_deleted: bool = False,
    cursor: str | None = None,
    limit: Limit = 50,
) -> MemoryPage:
    filters = MemoryFilter(
        bank_id=bank_id, scope=parse_scope_param(scope), topic=topic, created_after=created_after,
        created_before=created_before, event_time_after=event_time_after, event_time_before=event_time_before,
        as_of=as_of, include_deleted=include_deleted,
    )
    return await runtime.memories.list_memories(tenant_id=tenant.id, filters=filters, cursor=cursor, limit=limit)


@router.post("/memories:retrieve")
async def retrieve_memories(body: RetrieveRequest, tenant: MemoriesRead, runtime: RuntimeDep) -> RetrieveResponse:
    return await runtime.memories.retrieve_memories(tenant_id=tenant.id, request=body)


@router.post(
    "/memories:import",
    openapi_extra={"requestBody": {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}},
)
async def import_memories(
    request: Request, tenant: MemoriesWrite, runtime: RuntimeDep, bank_id: UUID | None = None
) -> ImportResult:
    """Import memories from a JSONL body (one memory per line), all or nothing."""
    raw = await request.body()
    check_import_size(len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid("body", "not UTF-8 text") from exc
    return await runtime.memories.import_memories(tenant_id=tenant.id, lines=text.splitlines(), bank_id=bank_id)


@router.get("/memories:export", response_class=StreamingResponse)
async def export_memories(
    tenant: MemoriesRead,
    runtime: RuntimeDep,
    bank_id: UUID | None = None,
    scope: Annotated[str | None, Query(description="URL-encoded JSON; default: the whole bank")] = None,
) -> StreamingResponse:
    """Stream a bank's live memories as JSONL (the format `:import` reads)."""
    parsed = parse_scope_param(scope)
    if bank_id is not None:
        await runtime.memories.get_bank(tenant_id=tenant.id, bank_id=bank_id)  # 404 before streaming

    async def lines() -> AsyncIterator[bytes]:
        async for memory in runtime.memories.export_memories(tenant_id=tenant.id, bank_id=bank_id, scope=parsed):
            yield (json.dumps(memory.model_dump(mode="json"), ensure_ascii=False) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


# -- one memory ------------------------------------------------------------------------------------------


@router.get("/memories/{memory_id:uuid}")
async def get_memory(memory_id: UUID, tenant: MemoriesRead, runtime: RuntimeDep) -> Memory:
    return await runtime.memories.get_memory(tenant_id=tenant.id, memory_id=memory_id)


@router.patch("/memories/{memory_id:uuid}")
async def update_memory(memory_id: UUID, body: MemoryUpdate, tenant: MemoriesWrite, runtime: RuntimeDep) -> Memory:
    return await runtime.memories.update_memory(tenant_id=tenant.id, memory_id=memory_id, data=body)


@router.delete("/memories/{memory_id:uuid}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_memory(memory_id: UUID, tenant: MemoriesWrite, runtime: RuntimeDep, hard: bool = False) -> Response:
    await runtime.memories.delete_memory(tenant_id=tenant.id, memory_id=memory_id, hard=hard)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/memories/{memory_id:uuid}/revisions")
async def list_memory_revisions(
    memory_id: UUID, tenant: MemoriesRead, runtime: RuntimeDep, cursor: str | None = None, limit: Limit = 100
) -> MemoryRevisionPage:
    return await runtime.memories.list_revisions(
        tenant_id=tenant.id, memory_id=memory_id, cursor=cursor, limit=limit
    )


@router.post("/memories/{memory_id:uuid}:rollback")
async def rollback_memory(
    memory_id: UUID, body: RollbackRequest, tenant: MemoriesWrite, runtime: RuntimeDep
) -> Memory:
    return await runtime.memories.rollback_memory(
        tenant_id=tenant.id, memory_id=memory_id, revision_number=body.revision_number
    )
