"""The backend interface: what a client does, with two implementations (HTTP and in-process).

Resources (`contextiq.sdk.resources`) turn the public arguments into request bodies and filters and
hand them here, so argument handling lives once. Bodies are JSON objects in their wire form (the JSON
of `SessionCreate`, `EventCreate`, `ApiKeyCreate`, `MemoryCreate`, `RetrieveRequest`, `GenerateRequest`,
…): over HTTP the server validates them, so the SDK never refuses what a newer server accepts;
in-process the embedded backend validates them with the same models and raises the same errors
(`InvalidError` naming `body.<field>`).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator
from uuid import UUID

from contextiq.core.types import JSON
from contextiq.memories.generation.models import (
    EventStatus,
    GenerationStatus,
    JobEventPage,
    MemoryGenerationJob,
    MemoryGenerationJobPage,
)
from contextiq.memories.models import (
    ImportResult,
    Memory,
    MemoryBank,
    MemoryBankList,
    MemoryFilter,
    MemoryPage,
    MemoryRevisionPage,
    RetrieveResponse,
)
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
    async def create_memory_bank(self, *, body: JSON) -> MemoryBank:
        """Create a memory bank from a `MemoryBankCreate` body (its name is unique in the tenant)."""

    @abc.abstractmethod
    async def get_memory_bank(self, *, bank_id: UUID) -> MemoryBank:
        """Return a memory bank."""

    @abc.abstractmethod
    async def list_memory_banks(self) -> MemoryBankList:
        """Return the tenant's memory banks, oldest first."""

    @abc.abstractmethod
    async def update_memory_bank(self, *, bank_id: UUID, body: JSON) -> MemoryBank:
        """Apply a `MemoryBankUpdate` body (omitted fields stay)."""

    @abc.abstractmethod
    async def delete_memory_bank(self, *, bank_id: UUID, force: bool) -> None:
        """Delete a bank; one that holds memories only with `force`, which deletes them too."""

    @abc.abstractmethod
    async def create_memory(self, *, body: JSON, idempotency_key: str | None) -> Memory:
        """Create a memory from a `MemoryCreate` body; a repeated key returns the first memory."""

    @abc.abstractmethod
    async def get_memory(self, *, memory_id: UUID) -> Memory:
        """Return a live memory."""

    @abc.abstractmethod
    async def list_memories(self, *, filters: MemoryFilter, cursor: str | None, limit: int) -> MemoryPage:
        """Return one page of memories, newest first (as of `filters.as_of` when given)."""

    @abc.abstractmethod
    async def update_memory(self, *, memory_id: UUID, body: JSON) -> Memory:
        """Apply a `MemoryUpdate` body as a new revision (omitted fields stay, `metadata` is merged)."""

    @abc.abstractmethod
    async def delete_memory(self, *, memory_id: UUID, hard: bool) -> None:
        """Delete a memory: softly with a DELETED revision, or with its history (`hard`)."""

    @abc.abstractmethod
    async def list_memory_revisions(
        self, *, memory_id: UUID, cursor: str | None, limit: int
    ) -> MemoryRevisionPage:
        """Return one page of a memory's revisions, oldest first."""

    @abc.abstractmethod
    async def rollback_memory(self, *, memory_id: UUID, body: JSON) -> Memory:
        """Restore the revision a `RollbackRequest` body names, as a new revision."""

    @abc.abstractmethod
    async def retrieve_memories(self, *, body: JSON) -> RetrieveResponse:
        """Rank a scope's memories for a `RetrieveRequest` body."""

    @abc.abstractmethod
    async def import_memories(self, *, jsonl: str, bank_id: UUID | None) -> ImportResult:
        """Import JSONL text (one memory per line), all or nothing."""

    @abc.abstractmethod
    def export_memories(
        self, *, bank_id: UUID | None, scope: dict[str, str] | None
    ) -> AsyncGenerator[Memory, None]:
        """Yield a bank's live memories (of one scope when given), newest first; `aclose()` ends the stream."""

    @abc.abstractmethod
    async def generate_memories(self, *, body: JSON, idempotency_key: str | None) -> MemoryGenerationJob:
        """Start a job from a `GenerateRequest` body; finished when it asked to wait and the wait sufficed."""

    @abc.abstractmethod
    async def get_job(self, *, job_id: UUID) -> MemoryGenerationJob:
        """Return a generation job with its status, progress and result."""

    @abc.abstractmethod
    async def list_jobs(
        self, *, status: GenerationStatus | None, cursor: str | None, limit: int
    ) -> MemoryGenerationJobPage:
        """Return one page of the tenant's generation jobs, newest first."""

    @abc.abstractmethod
    async def cancel_job(self, *, job_id: UUID) -> MemoryGenerationJob:
        """Cancel a pending or running job (cancelling twice is harmless)."""

    @abc.abstractmethod
    async def list_job_events(
        self, *, job_id: UUID, status: EventStatus | None, cursor: str | None, limit: int
    ) -> JobEventPage:
        """Return one page of what a job made of each source event, in event order."""

    @abc.abstractmethod
    async def wait_job(self, *, job_id: UUID, seconds: float) -> MemoryGenerationJob:
        """Return the job once finished, or as it is when `seconds` have passed (running it if need be)."""

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
