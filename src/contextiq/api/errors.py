"""RFC 9457 problem+json for every error, naming the offending fields in `errors[]`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from contextiq.core.errors import ContextIQError, FieldError

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def problem(
    *, status: int, code: str, title: str, detail: str, instance: str, errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Return a problem+json response (RFC 9457 §3)."""
    body: dict[str, Any] = {
        "type": f"urn:contextiq:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def domain_problem(exc: ContextIQError, path: str) -> JSONResponse:
    """The problem+json response of a domain error raised while serving `path`."""
    return problem(
        status=exc.status, code=exc.code, title=exc.title, detail=exc.detail,
        instance=path, errors=exc.errors, headers=exc.headers or None,
    )


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) >= 2 and parts[0] == "body" and parts[1].isdigit():
        return "body"  # a JSON syntax error reports the character offset, not a field
    return ".".join(parts) if parts else "body"


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""

    @app.exception_handler(ContextIQError)
    async def _domain(request: Request, exc: ContextIQError) -> JSONResponse:
        return domain_problem(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            message = str(err.get("msg", "invalid"))
            if err.get("type") == "json_invalid":
                message = "malformed JSON: " + str(err.get("ctx", {}).get("error", message))
            errors.append(FieldError(_field(err.get("loc", ())), message))
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        return problem(
            status=422, code="invalid", title="Invalid request", detail=detail,
            instance=request.url.path, errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem(
            status=exc.status_code, code=code, title=str(exc.detail), detail=str(exc.detail),
            instance=request.url.path, headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            status=500, code="internal", title="Internal error",
            detail="an unexpected error occurred; it has been logged", instance=request.url.path,
        )
