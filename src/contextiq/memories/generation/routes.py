"""Routes of memory generation and its jobs: parse, call one service method, return."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from contextiq.api.deps import IdempotencyKey, MemoriesRead, MemoriesWrite, RuntimeDep
from contextiq.memories.generation.models import (
    EventStatus,
    GenerateRequest,
    GenerationStatus,
    JobEventPage,
    MemoryGenerationJob,
    MemoryGenerationJobPage,
)

router = APIRouter(tags=["memory generation"])
Limit = Annotated[int, Query(ge=1, le=1000)]


def _answer(job: MemoryGenerationJob, response: Response) -> MemoryGenerationJob:
    # 200 once the job has finished; 202 while a worker still has it (poll Location).
    response.status_code = status.HTTP_200_OK if job.is_finished else status.HTTP_202_ACCEPTED
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


@router.post(
    "/v1/memories:generate",
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": MemoryGenerationJob, "description": "The job finished (wait_for_completion)"}},
)
async def generate_memories(
    body: GenerateRequest, tenant: MemoriesWrite, runtime: RuntimeDep, response: Response,
    idempotency_key: IdempotencyKey = None,
) -> MemoryGenerationJob:
    job = await runtime.generation.generate(tenant_id=tenant.id, data=body, idempotency_key=idempotency_key)
    return _answer(job, response)


@router.get("/v1/jobs")
async def list_jobs(
    tenant: MemoriesRead,
    runtime: RuntimeDep,
    status: GenerationStatus | None = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> MemoryGenerationJobPage:
    return await runtime.generation.list_jobs(tenant_id=tenant.id, status=status, cursor=cursor, limit=limit)


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: UUID, tenant: MemoriesRead, runtime: RuntimeDep) -> MemoryGenerationJob:
    return await runtime.generation.get_job(tenant_id=tenant.id, job_id=job_id)


@router.post("/v1/jobs/{job_id}:cancel")
async def cancel_job(job_id: UUID, tenant: MemoriesWrite, runtime: RuntimeDep) -> MemoryGenerationJob:
    return await runtime.generation.cancel_job(tenant_id=tenant.id, job_id=job_id)


@router.get("/v1/jobs/{job_id}/events")
async def list_job_events(
    job_id: UUID,
    tenant: MemoriesRead,
    runtime: RuntimeDep,
    status: EventStatus | None = None,
    cursor: str | None = None,
    limit: Limit = 100,
) -> JobEventPage:
    return await runtime.generation.list_job_events(
        tenant_id=tenant.id, job_id=job_id, status=status, cursor=cursor, limit=limit
    )
