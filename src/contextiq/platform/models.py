"""The wire contract of organizations and API keys (seed 004)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import Field, field_validator

from contextiq.core.models import ApiModel, ResponseModel

SCOPES = (
    "admin",
    "sessions:read",
    "sessions:write",
    "memories:read",
    "memories:write",
    "keys:read",
    "keys:write",
)
Scope = Literal[
    "admin",
    "sessions:read",
    "sessions:write",
    "memories:read",
    "memories:write",
    "keys:read",
    "keys:write",
]
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


class Organization(ResponseModel):
    id: UUID
    name: str
    slug: str
    settings: dict[str, object]
    created_at: datetime
    updated_at: datetime


class OrganizationCreate(ApiModel):
    name: str = Field(..., min_length=1, max_length=255)
    slug: str | None = Field(None, description="Lowercase letters, digits and dashes; derived from name")

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is not None and not SLUG_RE.match(value):
            raise ValueError("lowercase letters, digits and dashes, at most 100, starting with a letter or digit")
        return value


class ApiKey(ResponseModel):
    """An API key as listed: never the secret."""

    id: UUID
    organization_id: UUID
    name: str
    prefix: str
    scopes: list[str]
    rate_limit: int
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


class ApiKeyCreate(ApiModel):
    name: str = Field("default", min_length=1, max_length=255)
    scopes: list[Scope] = Field(default_factory=lambda: list[Scope](["admin"]), min_length=1)
    rate_limit: int | None = Field(None, ge=1, le=1_000_000, description="Requests per minute")
    expires_at: datetime | None = None


class ApiKeyCreated(ApiKey):
    """The answer to creating a key: the only time the full key is shown."""

    key: str


class ApiKeyPage(ResponseModel):
    items: list[ApiKey]
    next_cursor: str | None = None


def slugify(name: str) -> str:
    """Return a slug for an organization name."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return (slug or "org")[:100]
