"""Organizations, API keys and authentication.

Keys look like `ciq_<8-char prefix>_<secret>`. Only `ciq_<prefix>` (12 characters, seed 004's
`key_prefix`) and the SHA-256 of the whole key are stored; the key is shown once and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import anyio

from contextiq.core.cache.base import Cache
from contextiq.core.clock import as_utc, utcnow
from contextiq.core.db.engine import Database
from contextiq.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, db_errors
from contextiq.platform.models import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    Organization,
    OrganizationCreate,
    slugify,
)
from contextiq.platform.store import PlatformStore
from contextiq.platform.tables import ApiKeyRow, OrganizationRow

KEY_PREFIX = "ciq_"
_ALPHABET = string.ascii_lowercase + string.digits
LAST_USED_EVERY = timedelta(minutes=1)  # write last_used_at at most this often per key


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the API key, its organization (the tenant) and what it may do."""

    key_id: UUID
    tenant_id: UUID
    scopes: frozenset[str]
    rate_limit: int

    @property
    def id(self) -> UUID:
        """The tenant id (so `tenant.id` reads naturally in routes)."""
        return self.tenant_id

    def allows(self, scope: str) -> bool:
        """Whether this key may act with `scope`; `admin` allows everything, `x:write` implies `x:read`."""
        if "admin" in self.scopes or scope in self.scopes:
            return True
        return scope.endswith(":read") and scope.replace(":read", ":write") in self.scopes

    def require(self, scope: str) -> None:
        """Raise Forbidden unless this key allows `scope`."""
        if not self.allows(scope):
            raise Forbidden(f"this API key lacks the {scope!r} scope")


def hash_key(key: str) -> str:
    """Return the SHA-256 hex digest of a full API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def _key_model(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        organization_id=row.organization_id,
        name=row.name,
        prefix=row.key_prefix,
        scopes=list(row.scopes),
        rate_limit=row.rate_limit,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        created_at=row.created_at,
    )


def _write_secret(path: Path, content: str) -> None:
    """Write a file readable by its owner only (created with mode 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(path, 0o600)


class PlatformService:
    """Tenants and their keys."""

    def __init__(self, *, db: Database, cache: Cache, default_rate_limit: int = 600, auth_ttl: int = 30) -> None:
        self._db = db
        self._cache = cache
        self._default_rate_limit = default_rate_limit
        self._auth_ttl = auth_ttl
        self._last_touch: dict[UUID, datetime] = {}

    # -- organizations ----------------------------------------------------------------------------

    async def create_org(self, data: OrganizationCreate) -> Organization:
        """Create an organization; its slug is unique."""
        slug = data.slug or slugify(data.name)
        async with self._db.write() as db:
            row = OrganizationRow(name=data.name, slug=slug, settings={})
            with db_errors(f"organization slug {slug!r} is taken"):
                await PlatformStore(db).add(row)
            return Organization.model_validate(row)

    async def list_orgs(self) -> list[Organization]:
        """Return every organization."""
        async with self._db.read() as db:
            return [Organization.model_validate(r) for r in await PlatformStore(db).list_orgs()]

    async def get_org(self, org_id: UUID) -> Organization:
        """Return one organization."""
        async with self._db.read() as db:
            row = await PlatformStore(db).get_org(org_id)
        if row is None:
            raise NotFound("organization", org_id)
        return Organization.model_validate(row)

    async def ensure_org(self, name: str) -> tuple[Organization, bool]:
        """Return the organization with this name or slug, creating it if needed; and whether it was created."""
        async with self._db.read() as db:
            row = await PlatformStore(db).find_org(name)
        if row is not None:
            return Organization.model_validate(row), False
        try:
            return await self.create_org(OrganizationCreate(name=name)), True
        except Conflict:
            async with self._db.read() as db:
                row = await PlatformStore(db).find_org(name)
            if row is None:
                raise
            return Organization.model_validate(row), False

    # -- keys -------------------------------------------------------------------------------------

    async def create_key(self, *, org_id: UUID, data: ApiKeyCreate) -> ApiKeyCreated:
        """Create an API key; the answer carries the full key, which is never shown again."""
        if data.expires_at is not None and as_utc(data.expires_at) <= utcnow():
            raise Invalid("body.expires_at", "must be in the future")
        prefix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        async with self._db.write() as db:
            store = PlatformStore(db)
            if await store.get_org(org_id) is None:
                raise NotFound("organization", org_id)
            row = ApiKeyRow(
                organization_id=org_id,
                name=data.name,
                key_prefix=f"{KEY_PREFIX}{prefix}",
                key_hash=hash_key(key),
                scopes=sorted(set(data.scopes)),
                rate_limit=data.rate_limit or self._default_rate_limit,
                expires_at=data.expires_at,
            )
            await store.add(row)
            return ApiKeyCreated(**_key_model(row).model_dump(), key=key)

    async def list_keys(self, *, org_id: UUID) -> list[ApiKey]:
        """Return an organization's keys (without secrets)."""
        async with self._db.read() as db:
            return [_key_model(r) for r in await PlatformStore(db).list_keys(org_id)]

    async def revoke_key(self, *, org_id: UUID, key_id: UUID) -> ApiKey:
        """Revoke a key at once; requests with it get 401 from now on."""
        async with self._db.write() as db:
            row = await PlatformStore(db).get_key(org_id=org_id, key_id=key_id)
            if row is None:
                raise NotFound("api key", key_id)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            key_hash = row.key_hash
            model = _key_model(row)
        await self._cache.delete(f"apikey:{key_hash}")
        return model

    async def authenticate(self, token: str) -> Principal:
        """Return the principal of a bearer token, or raise Unauthorized."""
        parts = token.split("_")
        if len(parts) < 3 or not token.startswith(KEY_PREFIX):
            raise Unauthorized("malformed API key: expected ciq_<prefix>_<secret>")
        digest = hash_key(token)
        cache_key = f"apikey:{digest}"
        now = utcnow()
        cached = await self._cache.get(cache_key) if self._auth_ttl else None
        if cached is not None:
            data = json.loads(cached)
        else:
            data = await self._lookup(token, digest)
            if self._auth_ttl:
                await self._cache.set(cache_key, json.dumps(data), ttl=self._auth_ttl, version=0)
        if data.get("revoked"):
            raise Unauthorized("this API key was revoked")
        if data["expires_at"] and datetime.fromisoformat(data["expires_at"]) <= now:
            raise Unauthorized("this API key has expired")
        principal = Principal(
            key_id=UUID(data["key_id"]),
            tenant_id=UUID(data["tenant_id"]),
            scopes=frozenset(data["scopes"]),
            rate_limit=int(data["rate_limit"]),
        )
        await self._touch(principal.key_id, now)
        return principal

    async def _lookup(self, token: str, digest: str) -> dict[str, object]:
        prefix = token[: len(KEY_PREFIX) + 8]
        async with self._db.read() as db:
            rows = await PlatformStore(db).keys_by_prefix(prefix)
            for row in rows:
                if hmac.compare_digest(row.key_hash, digest):
                    org = await PlatformStore(db).get_org(row.organization_id)
                    return {
                        "key_id": str(row.id),
                        "tenant_id": str(row.organization_id),
                        "scopes": list(row.scopes),
                        "rate_limit": row.rate_limit,
                        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
                        "revoked": row.revoked_at is not None or org is None,
                    }
        raise Unauthorized("unknown API key")

    async def _touch(self, key_id: UUID, now: datetime) -> None:
        last = self._last_touch.get(key_id)
        if last is not None and now - last < LAST_USED_EVERY:
            return
        self._last_touch[key_id] = now
        async with self._db.write() as db:
            await PlatformStore(db).touch_key(key_id, now)

    # -- first start ------------------------------------------------------------------------------

    async def bootstrap(self, data_dir: Path) -> Path | None:
        """On a database with no organization, create `default` and an admin key in `<data_dir>/admin.key`.

        Returns the key file's path when it was created now, else None.
        """
        async with self._db.read() as db:
            if await PlatformStore(db).list_orgs():
                return None
        org, _ = await self.ensure_org("default")
        created = await self.create_key(org_id=org.id, data=ApiKeyCreate(name="admin (first start)"))
        path = data_dir / "admin.key"
        await anyio.to_thread.run_sync(_write_secret, path, created.key + "\n")
        return path
