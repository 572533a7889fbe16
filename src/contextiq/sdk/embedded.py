"""The embedded clients, `AsyncEmbeddedClient` and `EmbeddedClient`: ContextIQ in-process, no HTTP."""

from __future__ import annotations

from typing import Self
from uuid import UUID

from contextiq.core.config import Settings
from contextiq.sdk.backends.embedded import EmbeddedBackend
from contextiq.sdk.base import AsyncClientBase
from contextiq.sdk.sync import LoopThread, SyncClientBase


class AsyncEmbeddedClient(AsyncClientBase):
    """ContextIQ in this process, with the methods of `AsyncClient`.

    It owns a `Runtime` built from `settings` (default `Settings()`: a SQLite file in `./.contextiq`,
    or whatever `CONTEXTIQ_*` variables say). On first use it migrates the schema and, on an empty
    database, creates the `default` organization and its admin key (`<data_dir>/admin.key`), as the
    server does on its first start.

    Opening also runs the maintenance sweep once (expired sessions and memories), as the server does
    every `sweep_interval_seconds`.

    Args:
        settings: the configuration; the database may be SQLite or PostgreSQL.
        api_key: act as this key: its tenant, its scopes (checked on every call like the API does).
        tenant_id: act for this organization with every scope (trusted in-process code).
            With neither, the client acts for the `default` organization.
        background: run the server's background work in this event loop while the client is open:
            the maintenance loop and a job worker (generation jobs finish without anyone waiting).
            Default: `settings.worker_enabled`. Without it, `wait_for_completion=True` and
            `jobs.wait()` still run a job to completion in the calling task.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        api_key: str | None = None,
        tenant_id: UUID | str | None = None,
        background: bool | None = None,
    ) -> None:
        settings = settings or Settings()
        self._embedded = EmbeddedBackend(
            settings=settings,
            api_key=api_key,
            tenant_id=UUID(str(tenant_id)) if tenant_id is not None else None,
            background=settings.worker_enabled if background is None else background,
        )
        super().__init__(self._embedded)

    @property
    def tenant_id(self) -> UUID | None:
        """The organization this client acts for (known once it is open)."""
        return self._embedded.tenant_id

    async def open(self) -> None:
        """Open now rather than on first use: migrate, bootstrap, check the key or tenant."""
        await self._embedded.open()

    async def __aenter__(self) -> Self:
        await self.open()
        return self


class EmbeddedClient(SyncClientBase[AsyncEmbeddedClient]):
    """The synchronous twin of `AsyncEmbeddedClient`; it opens at once, so a bad key fails here.

    The runtime, and its background work when `background` is on, lives on a private event-loop
    thread (see `contextiq.sdk.sync`).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        api_key: str | None = None,
        tenant_id: UUID | str | None = None,
        background: bool | None = None,
    ) -> None:
        runner = LoopThread("contextiq-embedded")

        async def build() -> AsyncEmbeddedClient:
            client = AsyncEmbeddedClient(settings, api_key=api_key, tenant_id=tenant_id, background=background)
            try:
                await client.open()
            except BaseException:
                await client.aclose()
                raise
            return client

        try:
            client = runner.run(build())
        except BaseException:
            runner.stop()
            raise
        super().__init__(runner, client)

    @property
    def tenant_id(self) -> UUID | None:
        """The organization this client acts for."""
        return self._async.tenant_id
