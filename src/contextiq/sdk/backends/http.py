"""The HTTP backend: the REST API over httpx, with problem+json errors and safe retries.

Retries (exponential backoff with jitter, at most `max_retries` more attempts):
- 429 for every request: the server refuses before doing any work (api/deps.py: rate limit first).
  `Retry-After` is honoured, capped at `RETRY_AFTER_MAX` seconds.
- 503, and a connection lost after the request was sent, only for idempotent requests: GET, DELETE,
  and POSTs with an `Idempotency-Key`. Creates and appends always carry one (generated when the
  caller gives none), so a retry replays the first answer instead of writing twice.
- A connection that could not be opened (nothing was sent) for every request.
"""

from __future__ import annotations

import email.utils
import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import anyio
import httpx
from typing_extensions import override

from contextiq import __version__
from contextiq.core.types import JSON
from contextiq.platform.models import ApiKey, ApiKeyCreated, ApiKeyPage, Organization
from contextiq.sdk.backends.base import Backend
from contextiq.sdk.errors import ApiConnectionError, error_from_problem
from contextiq.sessions.models import Event, EventFilter, EventPage, Session, SessionFilter, SessionPage

BACKOFF_INITIAL: Final = 0.5  # seconds before the first retry, doubled each time
BACKOFF_MAX: Final = 8.0
RETRY_AFTER_MAX: Final = 60.0
RETRY_STATUSES: Final = frozenset({429, 503})
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
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request, retrying as the module docstring says; raise the ApiError of a failure."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, json=json, params=params, headers=headers)
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
