"""The app factory: `create_app(settings)` builds the FastAPI app around one Runtime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from contextiq import __version__
from contextiq.api.errors import install_error_handlers
from contextiq.api.fastpath import PATH as FAST_PATH
from contextiq.api.fastpath import RetrieveFastPath
from contextiq.api.health import router as health_router
from contextiq.api.metrics import Metrics, MetricsMiddleware
from contextiq.core.config import Settings
from contextiq.memories.generation.routes import router as generation_router
from contextiq.memories.routes import router as memories_router
from contextiq.platform.routes import router as platform_router
from contextiq.runtime import Runtime
from contextiq.sessions.routes import router as sessions_router

log = logging.getLogger("contextiq")


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    background: bool | None = None,
    bootstrap: bool = True,
    fast_retrieve: bool = True,
) -> FastAPI:
    """Build the app. With `runtime`, the caller owns it (tests); otherwise the app opens and closes one.

    `fast_retrieve`: serve `POST /v1/memories:retrieve` through `RetrieveFastPath` (api/fastpath.py),
    which answers as the route does with less CPU per request; False leaves it to FastAPI alone.
    """
    settings = settings or (runtime.settings if runtime else Settings())
    owned = runtime is None
    rt = runtime or Runtime(settings)
    run_background = settings.worker_enabled if background is None else background

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:
            await rt.prepare_schema()
            if bootstrap:
                path = await rt.platform.bootstrap(settings.data_dir)
                if path is not None:
                    log.warning("first start: an admin API key was written to %s", path.resolve())
            if run_background:
                rt.start_background()
            await rt.preload_embeddings()
        try:
            yield
        finally:
            if owned:
                await rt.aclose()

    app = FastAPI(
        title="ContextIQ",
        version=__version__,
        description="Memory and context server for AI agents.",
        lifespan=lifespan,
    )
    app.state.runtime = rt
    app.state.metrics = Metrics(rt.db)
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(platform_router)
    app.include_router(sessions_router)
    app.include_router(memories_router)
    app.include_router(generation_router)
    if fast_retrieve:
        route = next(r for r in memories_router.routes if getattr(r, "path", None) == FAST_PATH)
        app.add_middleware(RetrieveFastPath, runtime=rt, route=route)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: times both paths
    return app


def app_from_env() -> FastAPI:
    """Build the app from the environment (uvicorn `--factory`, several worker processes)."""
    return create_app(Settings())
