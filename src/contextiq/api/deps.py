"""FastAPI dependencies as `Annotated` aliases: the runtime, the caller, preconditions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request, Response

from contextiq.core.errors import Invalid, RateLimited, Unauthorized
from contextiq.platform.service import Principal
from contextiq.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    """Return the process's runtime (async: FastAPI would run a plain function in a worker thread)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def authorize(runtime: Runtime, authorization: str | None, scope: str) -> tuple[Principal, dict[str, str]]:
    """Authenticate the bearer API key of an `Authorization` header, count the request against its
    rate limit and check that it grants `scope`; return the principal and the rate-limit headers.

    Raises:
        Unauthorized: no header, not a bearer key, or an unknown, revoked or expired key.
        RateLimited: the key's requests per minute are spent.
        Forbidden: the key lacks `scope`.
    """
    if not authorization:
        raise Unauthorized("missing Authorization: Bearer <API key> header")
    kind, _, token = authorization.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be `Bearer <API key>`")
    principal = await runtime.platform.authenticate(token.strip())
    decision = await runtime.rate_limiter.hit(key_id=str(principal.key_id), limit=principal.rate_limit)
    if not decision.allowed:
        raise RateLimited(
            f"rate limit of {decision.limit} requests per minute exceeded for this API key",
            retry_after=decision.retry_after,
            headers=decision.headers(),
        )
    principal.require(scope)
    return principal, decision.headers()


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """Return a dependency that authenticates the caller, checks `scope` and counts the request."""

    async def dependency(
        request: Request,
        response: Response,
        runtime: RuntimeDep,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Principal:
        principal, limits = await authorize(runtime, authorization, scope)
        response.headers.update(limits)
        request.state.principal = principal
        return principal

    return dependency


SessionsRead = Annotated[Principal, Depends(require("sessions:read"))]
SessionsWrite = Annotated[Principal, Depends(require("sessions:write"))]
MemoriesRead = Annotated[Principal, Depends(require("memories:read"))]
MemoriesWrite = Annotated[Principal, Depends(require("memories:write"))]
KeysRead = Annotated[Principal, Depends(require("keys:read"))]
KeysWrite = Annotated[Principal, Depends(require("keys:write"))]
Admin = Annotated[Principal, Depends(require("admin"))]


def parse_if_match(value: str | None) -> int | None:
    """Return the version named by an If-Match header (`"7"`, `W/"7"` or `7`), or None."""
    if value is None:
        return None
    raw = value.strip()
    if raw.startswith("W/"):
        raw = raw[2:]
    raw = raw.strip('"')
    if not raw.isdigit():
        raise Invalid("header.If-Match", f'expected an ETag like "3", got {value!r}')
    return int(raw)


IfMatch = Annotated[str | None, Header(alias="If-Match")]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]
