"""Routes of the caller's organization and its API keys."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from contextiq.api.deps import KeysRead, KeysWrite, RuntimeDep
from contextiq.platform.models import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyPage, Organization

router = APIRouter(prefix="/v1", tags=["platform"])


@router.get("/organization")
async def get_organization(tenant: KeysRead, runtime: RuntimeDep) -> Organization:
    return await runtime.platform.get_org(tenant.id)


@router.post("/api-keys", status_code=status.HTTP_201_CREATED)
async def create_api_key(body: ApiKeyCreate, tenant: KeysWrite, runtime: RuntimeDep) -> ApiKeyCreated:
    return await runtime.platform.create_key(org_id=tenant.id, data=body)


@router.get("/api-keys")
async def list_api_keys(tenant: KeysRead, runtime: RuntimeDep) -> ApiKeyPage:
    return ApiKeyPage(items=await runtime.platform.list_keys(org_id=tenant.id))


@router.post("/api-keys/{key_id}:revoke")
async def revoke_api_key(key_id: UUID, tenant: KeysWrite, runtime: RuntimeDep) -> ApiKey:
    return await runtime.platform.revoke_key(org_id=tenant.id, key_id=key_id)
