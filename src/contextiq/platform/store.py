"""Queries over organizations and API keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from contextiq.platform.tables import ApiKeyRow, OrganizationRow


class PlatformStore:
    """Reads and writes organizations and keys inside the caller's transaction."""

    def __init__(self, db: AsyncSession) -> None:
        self._db = db

    async def add(self, row: OrganizationRow | ApiKeyRow) -> None:
        self._db.add(row)
        await self._db.flush()

    async def get_org(self, org_id: UUID) -> OrganizationRow | None:
        stmt = select(OrganizationRow).where(OrganizationRow.id == org_id, OrganizationRow.deleted_at.is_(None))
        return await self._db.scalar(stmt)

    async def find_org(self, name_or_slug: str) -> OrganizationRow | None:
        stmt = select(OrganizationRow).where(
            OrganizationRow.deleted_at.is_(None),
            or_(OrganizationRow.slug == name_or_slug, OrganizationRow.name == name_or_slug),
        )
        return (await self._db.scalars(stmt.order_by(OrganizationRow.created_at))).first()

    async def list_orgs(self) -> Sequence[OrganizationRow]:
        stmt = select(OrganizationRow).where(OrganizationRow.deleted_at.is_(None))
        return (await self._db.scalars(stmt.order_by(OrganizationRow.created_at))).all()

    async def keys_by_prefix(self, prefix: str) -> Sequence[ApiKeyRow]:
        return (await self._db.scalars(select(ApiKeyRow).where(ApiKeyRow.key_prefix == prefix))).all()

    async def get_key(self, *, org_id: UUID, key_id: UUID) -> ApiKeyRow | None:
        stmt = select(ApiKeyRow).where(ApiKeyRow.organization_id == org_id, ApiKeyRow.id == key_id)
        return await self._db.scalar(stmt)

    async def list_keys(self, org_id: UUID) -> Sequence[ApiKeyRow]:
        stmt = select(ApiKeyRow).where(ApiKeyRow.organization_id == org_id).order_by(ApiKeyRow.created_at)
        return (await self._db.scalars(stmt)).all()

    async def touch_key(self, key_id: UUID, when: datetime) -> None:
        await self._db.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=when))
