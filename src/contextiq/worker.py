"""The worker process: `run_worker(settings)` is what `contextiq worker` and `python -m contextiq.worker` run.

It lives beside the runtime (the composition root that knows every context's job handlers), not in
`core/jobs`, because core never imports a context.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from contextiq.core.config import Settings
from contextiq.core.shutdown import exit_despite_stray_threads
from contextiq.runtime import Runtime

log = logging.getLogger(__name__)


async def arun_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run a worker for every registered job kind until `stop` is set (or SIGTERM/SIGINT)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    runtime = Runtime(settings)
    try:
        await runtime.prepare_schema()
        worker = runtime.build_worker()
        await worker.run(stop=stop)
    finally:
        await runtime.aclose()
    log.info("worker stopped")


def run_worker(settings: Settings) -> None:
    """Run a worker process in the foreground until SIGTERM or SIGINT (`contextiq worker`)."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(arun_worker(settings))
    exit_despite_stray_threads()


if __name__ == "__main__":
    run_worker(Settings())
