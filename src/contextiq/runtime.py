"""The runtime: one object that owns the connections and services of a process.

The server, the worker, the CLI and the embedded client each build one from `Settings` and close it
when done; nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import anyio

from contextiq.core.cache import make_cache
from contextiq.core.clock import utcnow
from contextiq.core.config import Settings
from contextiq.core.db import migrate
from contextiq.core.db.engine import Database
from contextiq.core.db.partitions import PARTITIONED_TABLES, ensure_monthly_partitions
from contextiq.core.errors import Unavailable
from contextiq.core.jobs import JobHandler, JobQueue, Worker
from contextiq.core.llm.embeddings import EmbeddingProvider, make_embedding_provider
from contextiq.core.ratelimit import RateLimiter
from contextiq.memories.generation.models import GENERATE_KIND
from contextiq.memories.generation.service import GenerationService
from contextiq.memories.service import MemoryService
from contextiq.platform.service import PlatformService
from contextiq.sessions.service import SessionService

log = logging.getLogger(__name__)


class Runtime:
    """Connections (database, cache) and the services built on them."""

    def __init__(
        self, settings: Settings, *, null_pool: bool = False, embeddings: EmbeddingProvider | None = None
    ) -> None:
        self.settings = settings
        self.db = Database(
            settings.effective_database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            echo=settings.db_echo,
            null_pool=null_pool,
        )
        self.cache = make_cache(settings.redis_url)
        self.rate_limiter = RateLimiter(self.cache)
        self.platform = PlatformService(
            db=self.db,
            cache=self.cache,
            default_rate_limit=settings.rate_limit_per_minute,
            auth_ttl=settings.auth_cache_ttl_seconds,
        )
        self.sessions = SessionService(db=self.db, cache=self.cache, cache_ttl=settings.session_cache_ttl_seconds)
        # A provider passed in is the caller's (shared by tests, say): not closed by `aclose`.
        self._embeddings: EmbeddingProvider | None = embeddings
        self._owns_embeddings = embeddings is None
        self.memories = MemoryService(
            db=self.db,
            cache=self.cache,
            embeddings=lambda: self.embeddings,
            session_exists=lambda tenant_id, session_id: self.sessions.get_session(
                tenant_id=tenant_id, session_id=session_id
            ),
        )
        self.jobs = JobQueue(self.db)
        self.generation = GenerationService(
            db=self.db,
            queue=self.jobs,
            sessions=self.sessions,
            memories=self.memories,
            embeddings=lambda: self.embeddings,
            settings=settings,
        )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def embeddings(self) -> EmbeddingProvider:
        """The embedding provider, built on first use (loading a model is not free)."""
        if self._embeddings is None:
            s = self.settings
            self._embeddings = make_embedding_provider(
                provider=s.embeddings_provider,
                base_url=s.embeddings_base_url,
                api_key=s.embeddings_api_key.get_secret_value() if s.embeddings_api_key else None,
                model=s.embeddings_model,
                threads=s.embeddings_threads,
                query_workers=s.embeddings_query_workers,
                query_batch=s.embeddings_query_batch,
            )
        return self._embeddings

    async def preload_embeddings(self) -> None:
        """Load a local embedding model and run it once, so that the first request does not pay for it.

        Remote providers (OpenAI-compatible) are left alone: no call is made at start.
        """
        if not self.settings.embeddings_preload or self.settings.embeddings_provider == "openai":
            return
        provider = self.embeddings
        inner = getattr(provider, "inner", provider)  # past the cache, so nothing is cached
        await inner.embed(["warm up the model"])

    async def prepare_schema(self) -> None:
        """Migrate the schema when allowed, else refuse to run on an out-of-date one."""
        url = self.settings.effective_database_url
        if self.settings.should_auto_migrate:
            await anyio.to_thread.run_sync(migrate.upgrade, url)
            return
        current = await migrate.current_revision(url)
        head = migrate.head_revision()
        if current != head:
            raise Unavailable(
                f"the database schema is at revision {current or 'none'}, the code needs {head}: "
                "run `contextiq db upgrade` or set CONTEXTIQ_AUTO_MIGRATE=true"
            )

    async def check_ready(self) -> dict[str, str]:
        """Check the database and the cache; return a status per dependency."""
        status: dict[str, str] = {}
        try:
            await self.db.ping()
            status["database"] = "ok"
        except Exception as exc:  # readiness reports any failure rather than raising
            status["database"] = f"error: {type(exc).__name__}"
        try:
            await self.cache.ping()
            status["cache"] = "ok"
        except Exception as exc:
            status["cache"] = f"error: {type(exc).__name__}"
        return status

    async def run_maintenance(self) -> dict[str, int]:
        """Run the periodic jobs once: expire sessions and memories, create partitions ahead."""
        done = {
            "sessions_expired": await self.sessions.expire_sessions(),
            "memories_expired": await self.memories.expire_memories(),
            "partitions_created": 0,
        }
        if self.db.is_postgres:
            async with self.db.engine.begin() as conn:
                for table in PARTITIONED_TABLES:
                    done["partitions_created"] += len(
                        await ensure_monthly_partitions(conn, table=table, today=utcnow())
                    )
        return done

    def job_handlers(self) -> dict[str, JobHandler]:
        """Return the handler of every job kind, by kind."""
        return {GENERATE_KIND: self.generation.handler}

    def build_worker(self) -> Worker:
        """Return a job worker configured by the settings (`serve` runs one, `contextiq worker` more)."""
        s = self.settings
        return Worker(
            queue=self.jobs,
            handlers=self.job_handlers(),
            concurrency=s.worker_concurrency,
            lease_seconds=s.worker_lease_seconds,
            poll_interval=s.worker_poll_interval_seconds,
            pause_after=s.test_pause_after,
        )

    def start_background(self) -> None:
        """Start the periodic maintenance loop and an in-process job worker inside the running event loop."""
        self._tasks.append(asyncio.create_task(self._every(self.settings.sweep_interval_seconds, self.run_maintenance)))
        self._tasks.append(asyncio.create_task(self.build_worker().run()))

    @staticmethod
    async def _every(seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            try:
                await job()
            except Exception:  # a failed sweep is logged and retried on the next tick
                log.exception("maintenance job failed")
            await asyncio.sleep(seconds)

    async def aclose(self) -> None:
        """Stop background work and close connections."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._embeddings is not None and self._owns_embeddings:
            await self._embeddings.aclose()
        await self.cache.aclose()
        await self.db.aclose()
