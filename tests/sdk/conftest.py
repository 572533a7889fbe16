"""Fixtures of the SDK tests: a live server (uvicorn on a free port) for the synchronous clients."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from contextiq.api import create_app
from contextiq.core.config import Settings

STARTUP_DEADLINE = 30.0


@dataclass
class LiveServer:
    base_url: str
    admin_key: str


def sqlite_settings(data_dir: Path) -> Settings:
    """Test settings on a SQLite file in `data_dir`, without a background worker."""
    return Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'contextiq.db'}", env="test",
                    worker_enabled=False)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server on 127.0.0.1 and a free port, with its own SQLite database; stopped at the end."""
    data_dir = tmp_path_factory.mktemp("live")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # listening before the server starts: early connections wait in the backlog
    port = sock.getsockname()[1]
    app = create_app(sqlite_settings(data_dir))
    config = uvicorn.Config(app, log_level="warning", lifespan="on", loop="asyncio", http="h11", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_DEADLINE
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not thread.is_alive():
                pytest.fail("the live server did not answer /healthz in time")
            try:
                # Blocks until the app has started (migrated, bootstrapped) and answers.
                if httpx.get(f"{base_url}/healthz", timeout=remaining).status_code == 200:
                    break
            except httpx.TransportError:
                continue
        yield LiveServer(base_url, (data_dir / "admin.key").read_text().strip())
    finally:
        server.should_exit = True
        thread.join(STARTUP_DEADLINE)
        sock.close()
        assert not thread.is_alive(), "the live server did not stop"
