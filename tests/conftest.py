"""Shared fixtures: the two database dialects, the two caches, a tenant with an admin key, the app.

PostgreSQL and Redis tests skip with a reason when the service is unreachable, and fail instead when
`CI=true` (the CI machine must run them).
"""

from __future__ import annotations

import inspect
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from contextiq.api import create_app
from contextiq.core.config import Settings
from contextiq.core.db import migrate
from contextiq.platform.models import ApiKeyCreate, OrganizationCreate
from contextiq.runtime import Runtime

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN_URL = os.environ.get("CONTEXTIQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CONTEXTIQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, port: int) -> None:
    """Skip (laptop) or fail (CI) when a service is unreachable."""
    if _reachable(url, port):
        return
    message = f"{name} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message}; in CI the {name} tests are mandatory")
    pytest.skip(f"{message} (set CI=true to make this a failure)")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Every coroutine test runs on anyio's asyncio backend; marking the function before pytest
    # builds its items lets anyio parametrize it like an explicitly marked test.
    if inspect.iscoroutinefunction(obj) and collector.funcnamefilter(name):  # type: ignore[attr-defined]
        pytest.mark.anyio(obj)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("db") / "contextiq.db"
    url = f"sqlite+aiosqlite:///{path}"
    migrate.upgrade(url)
    return url


@contextmanager
def empty_postgres(prefix: str) -> Iterator[str]:
    """Create an empty PostgreSQL database of the test's own and yield its URL (asyncpg dialect);
    drop it at the end. Fails, or skips off CI, when PostgreSQL does not answer."""
    require_service("PostgreSQL", PG_ADMIN_URL, 5432)
    import asyncio

    import asyncpg

    base = PG_ADMIN_URL.replace("postgresql+asyncpg://", "postgresql://", 1)
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def ddl(statement: str) -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(ddl(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://{urlparse(base).netloc}/{name}"
    finally:
        asyncio.run(ddl(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with empty_postgres("ciq_test") as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_service("Redis", REDIS_URL, 6379)
    return REDIS_URL


@pytest.fixture(params=[pytest.param("memory"), pytest.param("redis", marks=pytest.mark.redis)])
def cache_url(request: pytest.FixtureRequest) -> str | None:
    """The cache of each kind: None (in-process) and a real Redis."""
    return None if request.param == "memory" else str(request.getfixturevalue("redis_url"))


@pytest.fixture(
    params=[pytest.param("sqlite", marks=pytest.mark.sqlite), pytest.param("postgres", marks=pytest.mark.postgres)]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """The URL of a migrated database of each dialect (shared by the session; tests use fresh tenants)."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(fixture)
    return url


def make_settings(tmp_path: Path, database_url: str, redis_url: str | None = None, **extra: object) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        worker_enabled=False,
        env="test",
        **{"embeddings_preload": False, **extra},  # type: ignore[arg-type]
    )


@pytest.fixture
async def runtime(database_url: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = Runtime(make_settings(tmp_path, database_url))
    try:
        yield rt
    finally:
        await rt.aclose()


@dataclass
class Tenant:
    """A fresh organization with an admin key, as a test's isolated world."""

    id: uuid.UUID
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def new_tenant(rt: Runtime, scopes: list[str] | None = None) -> Tenant:
    org = await rt.platform.create_org(OrganizationCreate(name=f"org {uuid.uuid4().hex[:10]}"))
    key = await rt.platform.create_key(org_id=org.id, data=ApiKeyCreate(scopes=scopes or ["admin"]))
    return Tenant(id=org.id, key=key.key)


@pytest.fixture
async def two_processes(
    database_url: str, cache_url: str | None, tmp_path: Path
) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two runtimes standing for two server processes that share the database and the cache."""
    a = Runtime(make_settings(tmp_path, database_url, cache_url))
    b = Runtime(make_settings(tmp_path, database_url, cache_url))
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


@pytest.fixture
async def tenant(runtime: Runtime) -> Tenant:
    return await new_tenant(runtime)


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://contextiq.test") as http:
        yield http

