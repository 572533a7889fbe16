"""What both async clients share: the resource namespaces over one backend, `health()`, `async with`."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from contextiq.sdk.backends.base import Backend
from contextiq.sdk.resources import (
    AsyncApiKeys,
    AsyncJobs,
    AsyncMemories,
    AsyncMemoryBanks,
    AsyncOrganization,
    AsyncSessions,
)


class AsyncClientBase:
    """An async client: `sessions`, `memory_banks`, `memories`, `jobs`, `api_keys`, `organization`."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.sessions = AsyncSessions(backend)
        self.memory_banks = AsyncMemoryBanks(backend)
        self.memories = AsyncMemories(backend)
        self.jobs = AsyncJobs(backend)
        self.api_keys = AsyncApiKeys(backend)
        self.organization = AsyncOrganization(backend)

    async def health(self) -> dict[str, str]:
        """Return `{"status": "ok", "version": …}` when ContextIQ is alive."""
        return await self._backend.health()

    async def aclose(self) -> None:
        """Close connections; calling it twice is harmless."""
        await self._backend.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
