"""ContextIQ: a memory and context server for AI agents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from contextiq.sdk import AsyncClient, AsyncEmbeddedClient, Client, EmbeddedClient

__all__ = ["AsyncClient", "AsyncEmbeddedClient", "Client", "EmbeddedClient", "__version__"]


def __getattr__(name: str) -> Any:
    # The SDK is imported on first use, so `import contextiq.core...` stays light.
    if name in {"AsyncClient", "AsyncEmbeddedClient", "Client", "EmbeddedClient"}:
        import contextiq.sdk

        return getattr(contextiq.sdk, name)
    raise AttributeError(name)
