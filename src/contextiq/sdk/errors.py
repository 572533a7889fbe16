"""The SDK's errors: the classes of `contextiq.core.errors`, carrying the RFC 9457 problem that caused them.

A problem+json answer is raised as the SDK class that subclasses both `ApiError` and the core class
of its status, so callers write the same `except` clauses against a server or in-process:

    ContextIQError                     (contextiq.core.errors)
    └── ApiError                       .status, .detail, .errors, .problem (the problem body)
        ├── BadRequestError            also a core BadRequest         (400)
        ├── UnauthorizedError          also a core Unauthorized       (401)
        ├── ForbiddenError             also a core Forbidden          (403)
        ├── NotFoundError              also a core NotFound           (404)
        ├── ConflictError              also a core Conflict           (409)
        ├── PreconditionFailedError    also a core PreconditionFailed (412)
        ├── InvalidError               also a core Invalid            (422)
        ├── RateLimitedError           also a core RateLimited        (429), .retry_after
        └── UnavailableError           also a core Unavailable        (503)
            └── ApiConnectionError     the server could not be reached; `__cause__` is httpx's error

The core classes' constructors take domain arguments (`NotFound(kind, ident)`, `Invalid(field,
message)`), not a problem body, hence the subclasses: each fills the core attributes from the body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from contextiq.core.errors import (
    BadRequest,
    Conflict,
    ContextIQError,
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
    PreconditionFailed,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from contextiq.core.types import JSON

PROBLEM_TYPE = "urn:contextiq:problem:"
_NOT_FOUND_KIND = re.compile(r"^(?P<kind>.+?) \S+ not found")


class ApiError(ContextIQError):
    """An error answered by ContextIQ, with the problem+json body (RFC 9457) it came as."""

    def __init__(
        self,
        detail: str,
        *,
        status: int,
        problem: JSON | None = None,
        errors: list[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        ContextIQError.__init__(self, detail, errors=errors)
        self.status = status
        self.problem: JSON = dict(problem or {})
        self.headers = dict(headers or {})
        code = str(self.problem.get("type", "")).removeprefix(PROBLEM_TYPE)
        if code:
            self.code = code
        if self.problem.get("title"):
            self.title = str(self.problem["title"])


class BadRequestError(ApiError, BadRequest):
    """400: the request could not be understood."""


class UnauthorizedError(ApiError, Unauthorized):
    """401: the API key is missing, malformed, unknown, revoked or expired."""


class ForbiddenError(ApiError, Forbidden):
    """403: the API key lacks the scope the operation needs."""


class NotFoundError(ApiError, NotFound):
    """404: the object does not exist in the caller's tenant."""

    def __init__(
        self,
        detail: str,
        *,
        status: int,
        problem: JSON | None = None,
        errors: list[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail, status=status, problem=problem, errors=errors, headers=headers)
        # The service words it `<kind> <id> not found…` (core/errors.py: NotFound).
        match = _NOT_FOUND_KIND.match(detail)
        self.kind = match["kind"] if match else "resource"


class ConflictError(ApiError, Conflict):
    """409: the target is inactive or expired, or a unique value is taken."""


class PreconditionFailedError(ApiError, PreconditionFailed):
    """412: `If-Match` named a version that is no longer current; re-read and retry."""


class InvalidError(ApiError, Invalid):
    """422: fields break the schema or a rule; `.errors` names each (`body.scope`)."""


class RateLimitedError(ApiError, RateLimited):
    """429: the key's rate limit is spent; `.retry_after` says for how many seconds."""

    def __init__(
        self,
        detail: str,
        *,
        status: int,
        problem: JSON | None = None,
        errors: list[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail, status=status, problem=problem, errors=errors, headers=headers)
        raw = next((v for k, v in self.headers.items() if k.lower() == "retry-after"), "").strip()
        self.retry_after = int(raw) if raw.isdigit() else 0


class UnavailableError(ApiError, Unavailable):
    """503: a dependency of the server (database, cache) is down."""


class ApiConnectionError(UnavailableError):
    """The server could not be reached or did not answer in time (after the retries)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, status=503)


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    412: PreconditionFailedError,
    422: InvalidError,
    429: RateLimitedError,
    503: UnavailableError,
}


def error_from_problem(status: int, problem: Any, *, headers: Mapping[str, str] | None = None) -> ApiError:
    """Return the error for an HTTP status and its (problem+json) body, whatever shape the body has."""
    body: JSON = problem if isinstance(problem, dict) else {}
    detail = body.get("detail") or body.get("title") or f"HTTP {status}"
    errors = [
        FieldError(str(item.get("field", "")), str(item.get("message", "")))
        for item in body.get("errors") or []
        if isinstance(item, dict)
    ]
    cls = _BY_STATUS.get(status, ApiError)
    return cls(str(detail), status=status, problem=body, errors=errors, headers=headers)


def problem_of(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str | None,
    errors: list[FieldError] | None = None,
) -> JSON:
    """Return the problem+json body the API writes for an error (api/errors.py, RFC 9457 §3)."""
    body: JSON = {"type": f"{PROBLEM_TYPE}{code}", "title": title, "status": status, "detail": detail}
    if instance is not None:
        body["instance"] = instance
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return body


def error_from_exception(exc: ContextIQError, *, instance: str | None) -> ApiError:
    """Return the SDK error for a service error, as if it had crossed the API (embedded mode)."""
    if isinstance(exc, ApiError):
        return exc
    body = problem_of(
        status=exc.status, code=exc.code, title=exc.title, detail=exc.detail, instance=instance,
        errors=exc.errors,
    )
    error = error_from_problem(exc.status, body, headers=exc.headers)
    error.__cause__ = exc
    return error


def invalid(errors: list[FieldError], *, instance: str | None) -> InvalidError:
    """Return the 422 error naming `errors`, worded like the API's validation answers."""
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
    body = problem_of(
        status=422, code="invalid", title="Invalid request", detail=detail, instance=instance, errors=errors
    )
    return InvalidError(detail, status=422, problem=body, errors=errors)


def invalid_from_validation(exc: ValidationError, *, where: str, instance: str | None) -> InvalidError:
    """Return the 422 error of a pydantic error, fields prefixed by `where` (`body`, `query`) like FastAPI."""
    errors = [
        FieldError(".".join([where, *(str(part) for part in err["loc"])]), str(err.get("msg", "invalid")))
        for err in exc.errors()
    ]
    return invalid(errors, instance=instance)
