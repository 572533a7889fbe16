"""The error tree every layer raises; `api/` turns it into RFC 9457 problem+json.

    ContextIQError (500 internal)
    ├── BadRequest (400 bad-request)
    ├── Unauthorized (401 unauthorized)
    ├── Forbidden (403 forbidden)
    ├── NotFound (404 not-found)
    ├── Conflict (409 conflict)            duplicate key, expired or inactive target
    ├── PreconditionFailed (412)           If-Match names a stale version
    ├── Invalid (422 invalid)              a field breaks a rule the schema cannot state
    ├── RateLimited (429 rate-limited)
    └── Unavailable (503 unavailable)      a dependency (database, Redis) is down
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One offending field: a dotted path (`body.scope`) and what is wrong with it."""

    field: str
    message: str


class ContextIQError(Exception):
    """Base of every error ContextIQ raises on purpose."""

    status: int = 500
    code: str = "internal"
    title: str = "Internal error"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.headers: dict[str, str] = {}


class BadRequest(ContextIQError):
    status, code, title = 400, "bad-request", "Bad request"


class Unauthorized(ContextIQError):
    status, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(ContextIQError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(ContextIQError):
    status, code, title = 404, "not-found", "Not found"

    def __init__(self, kind: str, ident: object, *, where: str | None = None) -> None:
        suffix = f" {where}" if where else ""
        super().__init__(f"{kind} {ident} not found{suffix}")
        self.kind = kind


class Conflict(ContextIQError):
    status, code, title = 409, "conflict", "Conflict"


class PreconditionFailed(ContextIQError):
    status, code, title = 412, "precondition-failed", "Precondition failed"


class Invalid(ContextIQError):
    status, code, title = 422, "invalid", "Invalid request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", errors=[FieldError(field, message)])


class RateLimited(ContextIQError):
    status, code, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after), **(headers or {})}


class Unavailable(ContextIQError):
    status, code, title = 503, "unavailable", "Service unavailable"


@contextmanager
def db_errors(what: str) -> Iterator[None]:
    """Map integrity violations raised inside the block to `Conflict`."""
    from sqlalchemy.exc import IntegrityError

    try:
        yield
    except IntegrityError as exc:
        raise Conflict(f"{what}: {exc.orig}") from exc
