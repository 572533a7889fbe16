"""Settings: the server's event loop choice, the local model's query batching."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from contextiq.core.config import Settings
from contextiq.core.llm.embeddings.cache import CachedEmbeddingProvider
from contextiq.core.llm.embeddings.local import LocalMiniLMProvider
from contextiq.runtime import Runtime
from tests.conftest import make_settings


def test_auto_serves_one_process_on_asyncio_and_several_on_uvloop() -> None:
    auto = Settings(server_loop="auto")
    assert auto.serve_loop(1) == "asyncio"
    assert auto.serve_loop(4) == "uvloop"
    assert Settings(server_loop="uvloop").serve_loop(1) == "uvloop"
    assert Settings(server_loop="asyncio").serve_loop(4) == "asyncio"


def test_an_unknown_loop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTEXTIQ_SERVER_LOOP", "trio")
    with pytest.raises(ValidationError, match="server_loop"):
        Settings()


def test_why_several_processes_avoid_asyncio() -> None:
    # uvicorn binds a shared socket as socket.socket(family=...): protocol 0. asyncio sets
    # TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP, so its connections keep Nagle's
    # algorithm on (the reason `serve_loop` picks uvloop for several processes).
    listener = socket.socket(family=socket.AF_INET)
    try:
        assert listener.proto == 0 != socket.IPPROTO_TCP
    finally:
        listener.close()


async def test_query_batching_settings_reach_the_local_model(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str, tmp_path: Path
) -> None:
    monkeypatch.setenv("CONTEXTIQ_EMBEDDINGS_QUERY_BATCH", "2")
    monkeypatch.setenv("CONTEXTIQ_EMBEDDINGS_QUERY_WORKERS", "2")
    runtime = Runtime(make_settings(tmp_path, sqlite_url))
    try:
        provider = runtime.embeddings
        assert isinstance(provider, CachedEmbeddingProvider) and isinstance(provider.inner, LocalMiniLMProvider)
        assert (provider.inner.query_batch, provider.inner._query_workers) == (2, 2)
    finally:
        await runtime.aclose()
    assert Settings.model_fields["embeddings_query_batch"].default == 4
    monkeypatch.setenv("CONTEXTIQ_EMBEDDINGS_QUERY_BATCH", "0")
    with pytest.raises(ValidationError, match="embeddings_query_batch"):
        Settings()
