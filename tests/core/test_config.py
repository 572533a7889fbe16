"""Settings: the server's event loop choice."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from contextiq.core.config import Settings


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
