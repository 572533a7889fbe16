"""The HTTP backend: the REST API over httpx, with problem+json errors and safe retries.

Retries (exponential backoff with jitter, at most `max_retries` more attempts):
- 429 for every request: the server refuses before doing any work (api/deps.py: rate limit first).
  `Retry-After` is honoured, capped at `RETRY_AFTER_MAX` seconds.
- 503, and a connection lost after the request was sent, only for idempotent requests: GET, DELETE,
  and POSTs with an `Idempotency-Key`. Creates and appends always carry one (generated when the
  caller gives none), so a retry replays the first answer instead of writing twice.
- A connection that could not be opened (nothing was sent) for every request.

`wait_job` polls `GET /v1/jobs/{id}` with its own backoff (`POLL_INITIAL` doubling to `POLL_MAX`).
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import random
import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import anyio
import httpx
from typing_extensions import override

from contextiq import __version__
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
from contextiq.sdk.backends.base import Backend
from contextiq.sdk.errors import ApiConnectionError, error_from_problem
from contextiq.sessions.models import Event, EventFilter, EventPage, Session, SessionFilter, SessionPage

BACKOFF_INITIAL: Final = 0.5  # seconds before the first retry, doubled each time
BACKOFF_MAX: Final = 8.0
RETRY_AFTER_MAX: Final = 60.0
RETRY_STATUSES: Final = frozenset({429, 503})
POLL_INITIAL: Final = 0.25  # seconds between the first polls of a job, doubled each time
POLL_MAX: Final = 5.0
# A generate that waits for its job answers within the server's CONTEXTIQ_GENERATION_WAIT_SECONDS
# (at most 3600, core/config.py), so its read timeout is that bound rather than the client's.
WAIT_READ_TIMEOUT: Final = 3660.0
# Failures where the request never left this process, so even a plain POST may be sent again.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


async def _sleep(seconds: float) -> None:
    await anyio.sleep(seconds)


def backoff_delay(attempt: int) -> float:
    """Return the pause before retry number `attempt + 1`: exponential, with equal jitter."""
    ceiling = min(BACKOFF_MAX, BACKOFF_INITIAL * 2**attempt)
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def retry_after_delay(value: str | None) -> float | None:
    """Return the pause a `Retry-After` header asks for (seconds or an HTTP date), capped; None if absent."""
    if value is None or not value.strip():
        return None
    raw = value.strip()
    if raw.isdigit():
        seconds = float(raw)
    else:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, min(seconds, RETRY_AFTER_MAX))


def _if_match(version: int | None) -> dict[str, str]:
    return {} if version is None else {"If-Match": f'"{version}"'}


def _page_params(cursor: str | None, limit: int, **filters: object) -> dict[str, Any]:
    params: dict[str, Any] = {name: value for name, value in filters.items() if value is not None}
    params["limit"] = limit
    if cursor is not None:
        params["cursor"] = cursor
    return params


class HttpBackend(Backend):
    """ContextIQ's REST API at `base_url`, authenticated with an API key."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        timeout: float,
        max_retries: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        headers = {"Accept": "application/json", "User-Agent": f"contextiq-python/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._max_retries = max_retries
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send a request, retrying as the module docstring says; raise the ApiError of a failure.

        With `stream`, the answer's body is left unread: the caller iterates it and closes the response.
        `read_timeout` replaces the client's timeout for reading the answer.
        """
        timeout = httpx.Timeout(self._timeout, read=read_timeout) if read_timeout is not None else None
        attempt = 0
        while True:
            try:
                request = self._http.build_request(
                    method, path, json=json, content=content, params=params, headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                retryable = idempotent or isinstance(exc, _NOT_SENT)
                if not retryable or attempt >= self._max_retries:
                    raise ApiConnectionError(
                        f"{method} {path}: {type(exc).__name__}: {exc or 'no answer'}"
                        f" (after {attempt + 1} attempt{'s' if attempt else ''})"
                    ) from exc
                delay = backoff_delay(attempt)
            else:
                if response.is_success:
                    return response
                if stream:
                    await response.aread()  # the problem body; reading it closes the stream
                status = response.status_code
                retryable = status in RETRY_STATUSES and (idempotent or status == 429)
                if not retryable or attempt >= self._max_retries:
                    raise self._error(response)
                asked = retry_after_delay(response.headers.get("Retry-After"))
                delay = backoff_delay(attempt) if asked is None else asked
            attempt += 1
            await _sleep(delay)

    @staticmethod
    def _error(response: httpx.Response) -> Exception:
        try:
            body: Any = response.json()
        except ValueError:
            text = response.text.strip()[:300]
            status = f"HTTP {response.status_code}"
            body = {"detail": f"{status}: {text}" if text else status}
        return error_from_problem(response.status_code, body, headers=dict(response.headers))

    @override
    async def create_session(self, *, body: JSON, idempotency_key: str | None) -> Session:
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        response = await self._request("POST", "/v1/sessions", json=body, headers=headers, idempotent=True)
        return Session.model_validate(response.json())

    @override
    async def get_session(self, *, session_id: UUID, num_recent_events: int | None) -> Session:
        params = {} if num_recent_events is None else {"num_recent_events": num_recent_events}
        response = await self._request("GET", f"/v1/sessions/{session_id}", params=params, idempotent=True)
        return Session.model_validate(response.json())

    @override
    async def list_sessions(self, *, filters: SessionFilter, cursor: str | None, limit: int) -> SessionPage:
        params = {**filters.model_dump(mode="json", exclude_none=True), "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._request("GET", "/v1/sessions", params=params, idempotent=True)
        return SessionPage.model_validate(response.json())

    @override
    async def update_session(self, *, session_id: UUID, body: JSON, if_match: int | None) -> Session:
        # A PATCH that merges state is not idempotent in general (a retried delete of a key set in
        # between would win), so it is not retried after it may have been received.
        response = await self._request(
            "PATCH", f"/v1/sessions/{session_id}", json=body, headers=_if_match(if_match), idempotent=False
        )
        return Session.model_validate(response.json())

    @override
    async def delete_session(self, *, session_id: UUID) -> None:
        await self._request("DELETE", f"/v1/sessions/{session_id}", idempotent=True)

    @override
    async def append_event(
        self, *, session_id: UUID, body: JSON, if_match: int | None, idempotency_key: str | None
    ) -> Event:
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4()), **_if_match(if_match)}
        response = await self._request(
            "POST", f"/v1/sessions/{session_id}/events", json=body, headers=headers, idempotent=True
        )
        return Event.model_validate(response.json())

    @override
    async def list_events(
        self, *, session_id: UUID, filters: EventFilter, cursor: str | None, limit: int
    ) -> EventPage:
        params = {**filters.model_dump(mode="json", exclude_none=True), "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._request(
            "GET", f"/v1/sessions/{session_id}/events", params=params, idempotent=True
        )
        return EventPage.model_validate(response.json())

    @override
    async def create_memory_bank(self, *, body: JSON) -> MemoryBank:
        # The API takes no Idempotency-Key here; a retry after a lost answer would meet the name as taken.
        response = await self._request("POST", "/v1/memory-banks", json=body, idempotent=False)
        return MemoryBank.model_validate(response.json())

    @override
    async def get_memory_bank(self, *, bank_id: UUID) -> MemoryBank:
        response = await self._request("GET", f"/v1/memory-banks/{bank_id}", idempotent=True)
        return MemoryBank.model_validate(response.json())

    @override
    async def list_memory_banks(self) -> MemoryBankList:
        response = await self._request("GET", "/v1/memory-banks", idempotent=True)
        return MemoryBankList.model_validate(response.json())

    @override
    async def update_memory_bank(self, *, bank_id: UUID, body: JSON) -> MemoryBank:
        response = await self._request("PATCH", f"/v1/memory-banks/{bank_id}", json=body, idempotent=False)
        return MemoryBank.model_validate(response.json())

    @override
    async def delete_memory_bank(self, *, bank_id: UUID, force: bool) -> None:
        params = {"force": "true"} if force else {}
        await self._request("DELETE", f"/v1/memory-banks/{bank_id}", params=params, idempotent=True)

    @override
    async def create_memory(self, *, body: JSON, idempotency_key: str | None) -> Memory:
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        response = await self._request("POST", "/v1/memories", json=body, headers=headers, idempotent=True)
        return Memory.model_validate(response.json())

    @override
    async def get_memory(self, *, memory_id: UUID) -> Memory:
        response = await self._request("GET", f"/v1/memories/{memory_id}", idempotent=True)
        return Memory.model_validate(response.json())

    @override
    async def list_memories(self, *, filters: MemoryFilter, cursor: str | None, limit: int) -> MemoryPage:
        query = filters.model_dump(mode="json", exclude_none=True)
        if "scope" in query:
            query["scope"] = jsonlib.dumps(query["scope"], ensure_ascii=False)  # URL-encoded JSON
        response = await self._request(
            "GET", "/v1/memories", params=_page_params(cursor, limit, **query), idempotent=True
        )
        return MemoryPage.model_validate(response.json())

    @override
    async def update_memory(self, *, memory_id: UUID, body: JSON) -> Memory:
        # Each update writes a revision and merges metadata, so a resent PATCH is not harmless.
        response = await self._request("PATCH", f"/v1/memories/{memory_id}", json=body, idempotent=False)
        return Memory.model_validate(response.json())

    @override
    async def delete_memory(self, *, memory_id: UUID, hard: bool) -> None:
        params = {"hard": "true"} if hard else {}
        await self._request("DELETE", f"/v1/memories/{memory_id}", params=params, idempotent=True)

    @override
    async def list_memory_revisions(
        self, *, memory_id: UUID, cursor: str | None, limit: int
    ) -> MemoryRevisionPage:
        response = await self._request(
            "GET", f"/v1/memories/{memory_id}/revisions", params=_page_params(cursor, limit), idempotent=True
        )
        return MemoryRevisionPage.model_validate(response.json())

    @override
    async def rollback_memory(self, *, memory_id: UUID, body: JSON) -> Memory:
        # A rollback writes a new revision each time it is applied.
        response = await self._request(
            "POST", f"/v1/memories/{memory_id}:rollback", json=body, idempotent=False
        )
        return Memory.model_validate(response.json())

    @override
    async def retrieve_memories(self, *, body: JSON) -> RetrieveResponse:
        # A POST only for its body: retrieval reads, so resending it is safe.
        response = await self._request("POST", "/v1/memories:retrieve", json=body, idempotent=True)
        return RetrieveResponse.model_validate(response.json())

    @override
    async def import_memories(self, *, jsonl: str, bank_id: UUID | None) -> ImportResult:
        # No Idempotency-Key on imports: a retry after a lost answer could import twice.
        params = {} if bank_id is None else {"bank_id": str(bank_id)}
        response = await self._request(
            "POST", "/v1/memories:import", content=jsonl.encode(), params=params,
            headers={"Content-Type": "application/x-ndjson"}, idempotent=False,
        )
        return ImportResult.model_validate(response.json())

    @override
    async def export_memories(
        self, *, bank_id: UUID | None, scope: dict[str, str] | None
    ) -> AsyncGenerator[Memory, None]:
        params: dict[str, str] = {}
        if bank_id is not None:
            params["bank_id"] = str(bank_id)
        if scope is not None:
            params["scope"] = jsonlib.dumps(scope, ensure_ascii=False)
        path = "/v1/memories:export"
        response = await self._request("GET", path, params=params, idempotent=True, stream=True)
        try:
            async for line in response.aiter_lines():
                if line.strip():
                    yield Memory.model_validate_json(line)
        except httpx.TransportError as exc:
            # Not retried: the lines already yielded cannot be taken back.
            raise ApiConnectionError(f"GET {path}: {type(exc).__name__}: {exc or 'no answer'} while streaming") from exc
        finally:
            await response.aclose()

    @override
    async def generate_memories(self, *, body: JSON, idempotency_key: str | None) -> MemoryGenerationJob:
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        config = body.get("config")
        waits = isinstance(config, dict) and bool(config.get("wait_for_completion"))
        # 200 with a finished job, or 202 with a pending one; the same model either way.
        response = await self._request(
            "POST", "/v1/memories:generate", json=body, headers=headers, idempotent=True,
            read_timeout=max(self._timeout, WAIT_READ_TIMEOUT) if waits else None,
        )
        return MemoryGenerationJob.model_validate(response.json())

    @override
    async def get_job(self, *, job_id: UUID) -> MemoryGenerationJob:
        response = await self._request("GET", f"/v1/jobs/{job_id}", idempotent=True)
        return MemoryGenerationJob.model_validate(response.json())

    @override
    async def list_jobs(
        self, *, status: GenerationStatus | None, cursor: str | None, limit: int
    ) -> MemoryGenerationJobPage:
        params = _page_params(cursor, limit, status=status)
        response = await self._request("GET", "/v1/jobs", params=params, idempotent=True)
        return MemoryGenerationJobPage.model_validate(response.json())

    @override
    async def cancel_job(self, *, job_id: UUID) -> MemoryGenerationJob:
        # Cancelling twice is a no-op on the server, so the request may be resent.
        response = await self._request("POST", f"/v1/jobs/{job_id}:cancel", idempotent=True)
        return MemoryGenerationJob.model_validate(response.json())

    @override
    async def list_job_events(
        self, *, job_id: UUID, status: EventStatus | None, cursor: str | None, limit: int
    ) -> JobEventPage:
        params = _page_params(cursor, limit, status=status)
        response = await self._request("GET", f"/v1/jobs/{job_id}/events", params=params, idempotent=True)
        return JobEventPage.model_validate(response.json())

    @override
    async def wait_job(self, *, job_id: UUID, seconds: float) -> MemoryGenerationJob:
        deadline = time.monotonic() + seconds
        delay = POLL_INITIAL
        while True:
            job = await self.get_job(job_id=job_id)
            remaining = deadline - time.monotonic()
            if job.is_finished or remaining <= 0:
                return job
            await _sleep(min(delay, remaining))
            delay = min(delay * 2, POLL_MAX)

    @override
    async def get_organization(self) -> Organization:
        response = await self._request("GET", "/v1/organization", idempotent=True)
        return Organization.model_validate(response.json())

    @override
    async def create_api_key(self, *, body: JSON) -> ApiKeyCreated:
        # The API takes no Idempotency-Key here: a retry after a lost answer could mint a second key.
        response = await self._request("POST", "/v1/api-keys", json=body, idempotent=False)
        return ApiKeyCreated.model_validate(response.json())

    @override
    async def list_api_keys(self) -> ApiKeyPage:
        response = await self._request("GET", "/v1/api-keys", idempotent=True)
        return ApiKeyPage.model_validate(response.json())

    @override
    async def revoke_api_key(self, *, key_id: UUID) -> ApiKey:
        # Revoking is idempotent by nature: the first revocation time is kept.
        response = await self._request("POST", f"/v1/api-keys/{key_id}:revoke", idempotent=True)
        return ApiKey.model_validate(response.json())

    @override
    async def health(self) -> dict[str, str]:
        response = await self._request("GET", "/healthz", idempotent=True)
        return {str(k): str(v) for k, v in response.json().items()}

    @override
    async def aclose(self) -> None:
        await self._http.aclose()
