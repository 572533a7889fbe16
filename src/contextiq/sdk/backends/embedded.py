"""The embedded backend: the service layer in-process, on a Runtime it owns; no HTTP.

It behaves like the API, so code moves between the two clients unchanged: bodies are validated with
the API models (`InvalidError` naming `body.<field>`), an API key is authenticated on every call and
its scopes checked like the routes do (`Principal.require`), and service errors come out as the same
`ApiError` classes with the problem body the server would have written. Two things differ on
purpose: there is no rate limit (there is no shared server to protect), and without an API key the
caller is trusted with every scope of its tenant.

Background work is the server's too: opening runs the maintenance sweep once (expired sessions and
memories, partitions ahead), and with `background` the runtime's maintenance loop and job worker run
in the event loop that opened it, as `contextiq serve` runs them. Without a worker, generation jobs
still finish: `wait_for_completion` and `wait_job` run the job in the caller's task (the service's
inline worker, under the same lease as any worker).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator
from typing import TYPE_CHECKING, Final, TypeVar
from uuid import UUID

from pydantic import BaseModel, TypeAdapter, ValidationError
from typing_extensions import override

from contextiq import __version__
from contextiq.core.config import Settings
from contextiq.core.errors import ContextIQError, FieldError, Invalid
from contextiq.core.scope import scope_problem
from contextiq.core.types import JSON
from contextiq.memories.generation.models import (
    EventStatus,
    GenerateRequest,
    GenerationStatus,
    JobEventPage,
    MemoryGenerationJob,
    MemoryGenerationJobPage,
)
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
from contextiq.platform.models import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyPage, Organization
from contextiq.sdk.backends.base import Backend
from contextiq.sdk.errors import ApiError, error_from_exception, invalid, invalid_from_validation
from contextiq.sessions.models import (
    Event,
    EventCreate,
    EventFilter,
    EventPage,
    Session,
    SessionCreate,
    SessionFilter,
    SessionPage,
    SessionUpdate,
)

if TYPE_CHECKING:
    from contextiq.runtime import Runtime

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
DEFAULT_ORG: Final = "default"
MAX_LIMIT: Final = 1000  # as the routes' `Limit` query type
_JOB_STATUS: Final[TypeAdapter[GenerationStatus | None]] = TypeAdapter(GenerationStatus | None)
_EVENT_STATUS: Final[TypeAdapter[EventStatus | None]] = TypeAdapter(EventStatus | None)


@contextlib.contextmanager
def _as_api_errors(instance: str | None) -> Iterator[None]:
    """Raise service errors as the SDK errors the API would have produced for `instance`."""
    try:
        yield
    except ApiError:
        raise
    except ContextIQError as exc:
        raise error_from_exception(exc, instance=instance) from exc


def _parse(model: type[M], body: JSON, *, instance: str) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid_from_validation(exc, where="body", instance=instance) from None


def _check_limit(limit: int, *, instance: str) -> None:
    if limit < 1:
        message = "Input should be greater than or equal to 1"
    elif limit > MAX_LIMIT:
        message = f"Input should be less than or equal to {MAX_LIMIT}"
    else:
        return
    raise invalid([FieldError("query.limit", message)], instance=instance)


def _check_query(adapter: TypeAdapter[T], value: T, *, field: str, instance: str) -> None:
    """Refuse a query value its route's type would refuse (FastAPI validates query parameters)."""
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        errors = [FieldError(field, str(err.get("msg", "invalid"))) for err in exc.errors()[:1]]
        raise invalid(errors, instance=instance) from None


def _check_scope_query(scope: dict[str, str] | None) -> None:
    """Refuse a `scope=` filter as `parse_scope_param` does for the routes."""
    problem = scope_problem(scope) if scope is not None else None
    if problem:
        raise Invalid("query.scope", problem)


class EmbeddedBackend(Backend):
    """ContextIQ in this process: opens (migrates, bootstraps) its Runtime on first use."""

    def __init__(
        self, *, settings: Settings, api_key: str | None, tenant_id: UUID | None, background: bool
    ) -> None:
        if api_key is not None and tenant_id is not None:
            raise ValueError("give api_key or tenant_id, not both: the key already names its tenant")
        self._settings = settings
        self._api_key = api_key
        self._tenant_id = tenant_id
        self._background = background
        self._runtime: Runtime | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def open(self) -> Runtime:
        """Open the runtime once: migrate, bootstrap the default org, resolve the tenant, sweep once.

        With `background`, also start the maintenance loop and a job worker in the running event loop.
        """
        async with self._lock:
            if self._closed:
                raise RuntimeError("this embedded client is closed")
            if self._runtime is not None:
                return self._runtime
            from contextiq.runtime import Runtime  # SQLAlchemy and Alembic only when embedded is used

            runtime = Runtime(self._settings)
            try:
                with _as_api_errors(None):
                    await runtime.prepare_schema()
                    await runtime.platform.bootstrap(self._settings.data_dir)
                    if self._api_key is not None:
                        principal = await runtime.platform.authenticate(self._api_key)
                        self._tenant_id = principal.tenant_id
                    elif self._tenant_id is not None:
                        await runtime.platform.get_org(self._tenant_id)
                    else:
                        org, _ = await runtime.platform.ensure_org(DEFAULT_ORG)
                        self._tenant_id = org.id
                    # The sweep is what marks expired sessions inactive and expired memories deleted
                    # (with a DELETED revision); without a background loop nothing else would.
                    await runtime.run_maintenance()
                if self._background:
                    runtime.start_background()
            except BaseException:
                await runtime.aclose()
                raise
            self._runtime = runtime
            return runtime

    @property
    def tenant_id(self) -> UUID | None:
        """The tenant this backend acts for, once opened."""
        return self._tenant_id

    async def _tenant(self, scope: str) -> tuple[Runtime, UUID]:
        """Return the runtime and the tenant, after checking that the caller may act with `scope`."""
        runtime = await self.open()
        if self._api_key is not None:
            # Every call, like every request: a key revoked meanwhile stops working.
            principal = await runtime.platform.authenticate(self._api_key)
            principal.require(scope)
            return runtime, principal.tenant_id
        assert self._tenant_id is not None  # set by open()
        return runtime, self._tenant_id

    @override
    async def create_session(self, *, body: JSON, idempotency_key: str | None) -> Session:
        instance = "/v1/sessions"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("sessions:write")
            data = _parse(SessionCreate, body, instance=instance)
            return await runtime.sessions.create_session(
                tenant_id=tenant, data=data, idempotency_key=idempotency_key
            )

    @override
    async def get_session(self, *, session_id: UUID, num_recent_events: int | None) -> Session:
        with _as_api_errors(f"/v1/sessions/{session_id}"):
            runtime, tenant = await self._tenant("sessions:read")
            return await runtime.sessions.get_session(
                tenant_id=tenant, session_id=session_id, num_recent_events=num_recent_events
            )

    @override
    async def list_sessions(self, *, filters: SessionFilter, cursor: str | None, limit: int) -> SessionPage:
        instance = "/v1/sessions"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("sessions:read")
            _check_limit(limit, instance=instance)
            return await runtime.sessions.list_sessions(
                tenant_id=tenant, filters=filters, cursor=cursor, limit=limit
            )

    @override
    async def update_session(self, *, session_id: UUID, body: JSON, if_match: int | None) -> Session:
        instance = f"/v1/sessions/{session_id}"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("sessions:write")
            data = _parse(SessionUpdate, body, instance=instance)
            return await runtime.sessions.update_session(
                tenant_id=tenant, session_id=session_id, data=data, if_match=if_match
            )

    @override
    async def delete_session(self, *, session_id: UUID) -> None:
        with _as_api_errors(f"/v1/sessions/{session_id}"):
            runtime, tenant = await self._tenant("sessions:write")
            await runtime.sessions.delete_session(tenant_id=tenant, session_id=session_id)

    @override
    async def append_event(
        self, *, session_id: UUID, body: JSON, if_match: int | None, idempotency_key: str | None
    ) -> Event:
        instance = f"/v1/sessions/{session_id}/events"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("sessions:write")
            data = _parse(EventCreate, body, instance=instance)
            return await runtime.sessions.append_event(
                tenant_id=tenant, session_id=session_id, data=data, if_match=if_match,
                idempotency_key=idempotency_key,
            )

    @override
    async def list_events(
        self, *, session_id: UUID, filters: EventFilter, cursor: str | None, limit: int
    ) -> EventPage:
        instance = f"/v1/sessions/{session_id}/events"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("sessions:read")
            _check_limit(limit, instance=instance)
            return await runtime.sessions.list_events(
                tenant_id=tenant, session_id=session_id, filters=filters, cursor=cursor, limit=limit
            )

    @override
    async def create_memory_bank(self, *, body: JSON) -> MemoryBank:
        instance = "/v1/memory-banks"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("memories:write")
            data = _parse(MemoryBankCreate, body, instance=instance)
            return await runtime.memories.create_bank(tenant_id=tenant, data=data)

    @override
    async def get_memory_bank(self, *, bank_id: UUID) -> MemoryBank:
        with _as_api_errors(f"/v1/memory-banks/{bank_id}"):
            runtime, tenant = await self._tenant("memories:read")
            return await runtime.memories.get_bank(tenant_id=tenant, bank_id=bank_id)

    @override
    async def list_memory_banks(self) -> MemoryBankList:
        with _as_api_errors("/v1/memory-banks"):
            runtime, tenant = await self._tenant("memories:read")
            return await runtime.memories.list_banks(tenant_id=tenant)

    @override
    async def update_memory_bank(self, *, bank_id: UUID, body: JSON) -> MemoryBank:
        instance = f"/v1/memory-banks/{bank_id}"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("memories:write")
            data = _parse(MemoryBankUpdate, body, instance=instance)
            return await runtime.memories.update_bank(tenant_id=tenant, bank_id=bank_id, data=data)

    @override
    async def delete_memory_bank(self, *, bank_id: UUID, force: bool) -> None:
        with _as_api_errors(f"/v1/memory-banks/{bank_id}"):
            runtime, tenant = await self._tenant("memories:write")
            await runtime.memories.delete_bank(tenant_id=tenant, bank_id=bank_id, force=force)

    @override
    async def create_memory(self, *, body: JSON, idempotency_key: str | None) -> Memory:
        instance = "/v1/memories"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("memories:write")
            data = _parse(MemoryCreate, body, instance=instance)
            return await runtime.memories.create_memory(
                tenant_id=tenant, data=data, idempotency_key=idempotency_key
            )

    @override
    async def get_memory(self, *, memory_id: UUID) -> Memory:
        with _as_api_errors(f"/v1/memories/{memory_id}"):
            runtime, tenant = await self._tenant("memories:read")
            return await runtime.memories.get_memory(tenant_id=tenant, memory_id=memory_id)

    @override
    async def list_memories(self, *, filters: MemoryFilter, cursor: str | None, limit: int) -> MemoryPage:
        instance = "/v1/memories"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("memories:read")
            _check_scope_query(filters.scope)
            _check_limit(limit, instance=instance)
            return await runtime.memories.list_memories(
                tenant_id=tenant, filters=filters, cursor=cursor, limit=limit
            )

    @override
    async def update_memory(self, *, memory_id: UUID, body: JSON) -> Memory:
        instance = f"/v1/memories/{memory_id}"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("memories:write")
            data = _parse(MemoryUpdate, body, instance=instance)
            return await runtime.memories.update_memory(tenant_id=tenant, memory_id=memory_id, data=data)

    @override
    async def delete_memory(self, *, memory_id: UUID, hard: bool) -> None:
        with _as_api_errors(f"/v1/memories/{memory_id}"):
            runtime, tenant = await self._tenant("memories:write")
            await runtime.memories.delete_memory(tenant_id=tenant, memory_id=memory_id, hard=hard)

    @override
    async def list_memory_revisions(
        self, *, memory_id: UUID, cursor: str | None, limit: int
    ) -> MemoryRevisionPage:
        instance = f"/v1/memories/{memory_id}/revisions"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("memories:read")
            _check_limit(limit, instance=instance)
            return await runtime.memories.list_revisions(
                tenant_id=tenant, memory_id=memory_id, cursor=cursor, limit=limit
            )

    @override
    async def rollback_memory(self, *, memory_id: UUID, body: JSON) -> Memory:
        instance = f"/v1/memories/{memory_id}:rollback"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("memories:write")
            data = _parse(RollbackRequest, body, instance=instance)
            return await runtime.memories.rollback_memory(
                tenant_id=tenant, memory_id=memory_id, revision_number=data.revision_number
            )

    @override
    async def retrieve_memories(self, *, body: JSON) -> RetrieveResponse:
        instance = "/v1/memories:retrieve"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("memories:read")
            data = _parse(RetrieveRequest, body, instance=instance)
            return await runtime.memories.retrieve_memories(tenant_id=tenant, request=data)

    @override
    async def import_memories(self, *, jsonl: str, bank_id: UUID | None) -> ImportResult:
        with _as_api_errors("/v1/memories:import"):
            runtime, tenant = await self._tenant("memories:write")
            check_import_size(len(jsonl.encode()))
            return await runtime.memories.import_memories(
                tenant_id=tenant, lines=jsonl.splitlines(), bank_id=bank_id
            )

    @override
    async def export_memories(
        self, *, bank_id: UUID | None, scope: dict[str, str] | None
    ) -> AsyncGenerator[Memory, None]:
        with _as_api_errors("/v1/memories:export"):
            runtime, tenant = await self._tenant("memories:read")
            _check_scope_query(scope)
            if bank_id is not None:
                await runtime.memories.get_bank(tenant_id=tenant, bank_id=bank_id)  # 404 before the first item
            async for memory in runtime.memories.export_memories(tenant_id=tenant, bank_id=bank_id, scope=scope):
                yield memory

    @override
    async def generate_memories(self, *, body: JSON, idempotency_key: str | None) -> MemoryGenerationJob:
        instance = "/v1/memories:generate"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("memories:write")
            data = _parse(GenerateRequest, body, instance=instance)
            # With wait_for_completion the service runs the job here, in this task (its inline worker).
            return await runtime.generation.generate(tenant_id=tenant, data=data, idempotency_key=idempotency_key)

    @override
    async def get_job(self, *, job_id: UUID) -> MemoryGenerationJob:
        with _as_api_errors(f"/v1/jobs/{job_id}"):
            runtime, tenant = await self._tenant("memories:read")
            return await runtime.generation.get_job(tenant_id=tenant, job_id=job_id)

    @override
    async def list_jobs(
        self, *, status: GenerationStatus | None, cursor: str | None, limit: int
    ) -> MemoryGenerationJobPage:
        instance = "/v1/jobs"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("memories:read")
            _check_query(_JOB_STATUS, status, field="query.status", instance=instance)
            _check_limit(limit, instance=instance)
            return await runtime.generation.list_jobs(tenant_id=tenant, status=status, cursor=cursor, limit=limit)

    @override
    async def cancel_job(self, *, job_id: UUID) -> MemoryGenerationJob:
        with _as_api_errors(f"/v1/jobs/{job_id}:cancel"):
            runtime, tenant = await self._tenant("memories:write")
            return await runtime.generation.cancel_job(tenant_id=tenant, job_id=job_id)

    @override
    async def list_job_events(
        self, *, job_id: UUID, status: EventStatus | None, cursor: str | None, limit: int
    ) -> JobEventPage:
        instance = f"/v1/jobs/{job_id}/events"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("memories:read")
            _check_query(_EVENT_STATUS, status, field="query.status", instance=instance)
            _check_limit(limit, instance=instance)
            return await runtime.generation.list_job_events(
                tenant_id=tenant, job_id=job_id, status=status, cursor=cursor, limit=limit
            )

    @override
    async def wait_job(self, *, job_id: UUID, seconds: float) -> MemoryGenerationJob:
        with _as_api_errors(f"/v1/jobs/{job_id}"):
            # The scope of polling the job over HTTP; running it is progress on work already asked for.
            runtime, tenant = await self._tenant("memories:read")
            # Runs the job here when no worker holds it, else polls; at the deadline a job cut off is
            # handed back to the queue (GenerationService.wait).
            return await runtime.generation.wait(tenant_id=tenant, job_id=job_id, seconds=seconds)

    @override
    async def get_organization(self) -> Organization:
        with _as_api_errors("/v1/organization"):
            runtime, tenant = await self._tenant("keys:read")
            return await runtime.platform.get_org(tenant)

    @override
    async def create_api_key(self, *, body: JSON) -> ApiKeyCreated:
        instance = "/v1/api-keys"
        with _as_api_errors(instance):
            runtime, tenant = await self._tenant("keys:write")
            data = _parse(ApiKeyCreate, body, instance=instance)
            return await runtime.platform.create_key(org_id=tenant, data=data)

    @override
    async def list_api_keys(self) -> ApiKeyPage:
        with _as_api_errors("/v1/api-keys"):
            runtime, tenant = await self._tenant("keys:read")
            return ApiKeyPage(items=await runtime.platform.list_keys(org_id=tenant))

    @override
    async def revoke_api_key(self, *, key_id: UUID) -> ApiKey:
        with _as_api_errors(f"/v1/api-keys/{key_id}:revoke"):
            runtime, tenant = await self._tenant("keys:write")
            return await runtime.platform.revoke_key(org_id=tenant, key_id=key_id)

    @override
    async def health(self) -> dict[str, str]:
        await self.open()
        return {"status": "ok", "version": __version__}

    @override
    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            await runtime.aclose()
