"""The HTTP clients: `AsyncClient` and its synchronous twin `Client`."""

from __future__ import annotations

import os

import httpx

from contextiq.sdk.backends.http import HttpBackend
from contextiq.sdk.base import AsyncClientBase
from contextiq.sdk.sync import LoopThread, SyncClientBase

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
API_KEY_ENV = "CONTEXTIQ_API_KEY"


class AsyncClient(AsyncClientBase):
    """A client of a ContextIQ server.

    Args:
        base_url: the server, e.g. `http://127.0.0.1:8080` (what `contextiq serve` listens on).
        api_key: a `ciq_…` key; defaults to the `CONTEXTIQ_API_KEY` environment variable.
        timeout: seconds for each attempt of a request.
        max_retries: how many times a failed request is sent again (429, 503, connection errors;
            see `contextiq.sdk.backends.http`); 0 disables retries.
        transport: an httpx async transport, e.g. `httpx.ASGITransport(app=app)` to call an app in-process.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        *,
        timeout: float = 30,
        max_retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        super().__init__(
            HttpBackend(
                base_url=base_url,
                api_key=api_key if api_key is not None else os.environ.get(API_KEY_ENV),
                timeout=timeout,
                max_retries=max_retries,
                transport=transport,
            )
        )


class Client(SyncClientBase[AsyncClient]):
    """The synchronous twin of `AsyncClient`: the same arguments and methods, plain return values.

    It drives an `AsyncClient` on a private event-loop thread (see `contextiq.sdk.sync`), so
    `transport` is an httpx *async* transport; `httpx.MockTransport` serves both kinds.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        *,
        timeout: float = 30,
        max_retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        runner = LoopThread("contextiq-client")

        async def build() -> AsyncClient:
            return AsyncClient(
                base_url, api_key, timeout=timeout, max_retries=max_retries, transport=transport
            )

        try:
            client = runner.run(build())
        except BaseException:
            runner.stop()
            raise
        super().__init__(runner, client)
