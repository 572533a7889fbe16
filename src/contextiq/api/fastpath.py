"""A lean path for the server's hottest request, `POST /v1/memories:retrieve`.

FastAPI spends about 0.2 ms of the event loop's CPU on each request before and after the endpoint
(middleware, routing, dependency solving, response validation); for a retrieval that takes 1-2 ms
of that thread in all, that is a tenth of the server's throughput. `RetrieveFastPath` is a pure
ASGI middleware that serves the common case itself with the same building blocks as the route
(`authorize`, `RetrieveRequest`, the service, the response model's serializer, `domain_problem`)
and hands everything else to the app unchanged, the request body replayed:

- another method or path, a body that is not `application/json`, larger than `MAX_BODY`, or that
  `RetrieveRequest` rejects: the app answers (so its 422 problem+json names the fields as ever);
- a domain error (401, 403, 429, 404, 422 from the service): the same problem+json as the app's
  handler, without the rate-limit headers, as the app sends none with an error;
- anything else propagates to the server-error middleware, as from the route.

`tests/api/test_fastpath.py` compares the two paths response by response (status, headers, body).
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contextiq.api.deps import authorize
from contextiq.api.errors import domain_problem
from contextiq.core.errors import ContextIQError
from contextiq.memories.models import RetrieveRequest, RetrieveResponse
from contextiq.runtime import Runtime

PATH = "/v1/memories:retrieve"
MAX_BODY = 1 << 20  # a retrieval body is a few hundred bytes; a bigger one goes through the app
_RESPONSE = TypeAdapter(RetrieveResponse)  # as FastAPI serialises the route's return value


class RetrieveFastPath:
    """Serve `POST /v1/memories:retrieve` without FastAPI's per-request machinery (see the module).

    Args:
        app: the app (its middleware) to hand every other request to.
        runtime: the runtime the route would use.
        route: the route object, set as `scope["route"]` so that metrics label the request as the
            app would.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime, route: Any = None) -> None:
        self.app = app
        self.runtime = runtime
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST"
            or scope.get("root_path") or not _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        messages, body = await _read_body(receive)
        request = None
        if body is not None:
            try:
                request = RetrieveRequest.model_validate_json(body)
            except ValidationError:
                request = None
        if request is None:  # the app reads the same body and answers
            await self.app(scope, _replay(messages, receive), send)
            return
        if self.route is not None:
            scope["route"] = self.route
        authorization = _header(scope, b"authorization")
        try:
            principal, limits = await authorize(self.runtime, authorization, "memories:read")
            scope.setdefault("state", {})["principal"] = principal
            found = await self.runtime.memories.retrieve_memories(tenant_id=principal.tenant_id, request=request)
        except ContextIQError as exc:
            await domain_problem(exc, PATH)(scope, receive, send)
            return
        payload = _RESPONSE.dump_json(found, by_alias=True)
        headers = [(b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json")]
        headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in limits.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _is_json(scope: Scope) -> bool:
    """Whether the request declares a JSON body (`application/json`, parameters allowed)."""
    kind = _header(scope, b"content-type")
    return kind is not None and kind.split(";", 1)[0].strip().lower() == "application/json"


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """Receive the body: the messages read and the whole body, or None when it is larger than
    `MAX_BODY` or the client left (the messages then hold what was read, for the app)."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > MAX_BODY:
            return messages, None
        if not message.get("more_body", False):
            return messages, b"".join(m.get("body", b"") for m in messages)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that returns `messages` first, then what `receive` returns."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


__all__ = ["MAX_BODY", "PATH", "RetrieveFastPath"]
