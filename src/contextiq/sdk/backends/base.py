"""The backend interface: what a client does, with two implementations (HTTP and in-process).

Resources (`contextiq.sdk.resources`) turn the public arguments into request bodies and filters and
hand them here, so argument handling lives once. Bodies are JSON objects in their wire form (the JSON
of `SessionCreate`, `SessionUpdate`, `EventCreate`, `ApiKeyCreate`): over HTTP the server validates
them, so the SDK never refuses what a newer server accepts; in-process the embedded backend validates
them with the same models and raises the same errors (`InvalidError` naming `body.<field>`).
"""

from __future__ import annotations

import abc
from uuid import UUID

from contextiq.core.types import JSON
from contextiq.platform.models import ApiKey, ApiKeyCreated, ApiKeyPage, Organization
from contextiq.sessions.models import Event, EventFilter, EventPage, Session, SessionFilter, SessionPage


class Backend(abc.ABC):
    """One tenant's view of ContextIQ; every error is an `contextiq.sdk.errors.ApiError`."""

    @abc.abstractmethod
    async def create_session(self, *, body: JSON, idempotency_key: str | None) -> Session:
        """Create a session from a `SessionCreate` body; a repeated key returns the first session."""

    @abc.abstractmethod
    async def get_session(self, *, session_id: UUID, num_recent_events: int | None) -> Session:
        """Return a session with its merged state and, if asked, its newest events."""

    @abc.abstractmethod
    async def list_sessions(self, *, filters: SessionFilter, cursor: str | None, limit: int) -> SessionPage:
        """Return one page of sessions, newest first."""

    @abc.abstractmethod
    async def update_session(self, *, session_id: UUID, body: JSON, if_match: int | None) -> Session:
        """Apply a `SessionUpdate` body (omitted fields stay); refuse a stale `if_match` version."""

    @abc.abstractmethod
    async def delete_session(self, *, session_id: UUID) -> None:
        """Delete a session, its events and its child sessions."""

    @abc.abstractmethod
    async def append_event(
        self, *, session_id: UUID, body: JSON, if_match: int | None, idempotency_key: str | None
    ) -> Event:
        """Append an `EventCreate` body, applying its state delta; a repeated key returns the first event."""

    @abc.abstractmethod
    async def list_events(
        self, *, session_id: UUID, filters: EventFilter, cursor: str | None, limit: int
    ) -> EventPage:
        """Return one page of a session's events."""

    @abc.abstractmethod
    async def get_organization(self) -> Organization:
        """Return the caller's organization (the tenant)."""

    @abc.abstractmethod
    async def create_api_key(self, *, body: JSON) -> ApiKeyCreated:
        """Create an API key from an `ApiKeyCreate` body; the answer is the only time the key is shown."""

    @abc.abstractmethod
    async def list_api_keys(self) -> ApiKeyPage:
        """Return the tenant's API keys, without secrets."""

    @abc.abstractmethod
    async def revoke_api_key(self, *, key_id: UUID) -> ApiKey:
        """Revoke a key at once (revoking twice is harmless)."""

    @abc.abstractmethod
    async def health(self) -> dict[str, str]:
        """Return `{"status": "ok", "version": …}` when ContextIQ is alive."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections; calling it twice is harmless."""
