"""The Python SDK: HTTP clients of a ContextIQ server and embedded (in-process) clients, async and sync.

    from contextiq.sdk import Client
    with Client("http://127.0.0.1:8080", api_key="ciq_…") as client:
        session = client.sessions.create("user-1", agent_id="support")

Errors are the classes of `contextiq.core.errors` (see `contextiq.sdk.errors`).
"""

from __future__ import annotations

from contextiq.sdk.client import AsyncClient, Client
from contextiq.sdk.embedded import AsyncEmbeddedClient, EmbeddedClient
from contextiq.sdk.errors import ApiConnectionError, ApiError

__all__ = ["ApiConnectionError", "ApiError", "AsyncClient", "AsyncEmbeddedClient", "Client", "EmbeddedClient"]
