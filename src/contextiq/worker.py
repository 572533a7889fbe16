"""The worker process: `run_worker(settings)` is what `contextiq worker` and `python -m contextiq.worker` run.

It lives beside the runtime (the composition root that knows every context's job handlers), not in
`core/jobs`, because core never imports a context.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time

from contextiq.core.config import Settings
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


#: Seconds a stopped worker waits for threads that libraries left running before it exits anyway.
EXIT_GRACE_SECONDS = 5.0


def run_worker(settings: Settings) -> None:
    """Run a worker process in the foreground until SIGTERM or SIGINT (`contextiq worker`)."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(arun_worker(settings))
    exit_despite_stray_threads()


def exit_despite_stray_threads(grace: float = EXIT_GRACE_SECONDS) -> None:
    """Make a stopped process exit even if a library left a non-daemon thread running.

    Python waits for every non-daemon thread before it exits. aiosqlite runs each connection in one,
    and a connection whose opening was cancelled (a SIGTERM during a job claim) is never closed: its
    thread then kept a stopped worker alive for good. Everything the worker did is committed or
    rolled back by now, so after `grace` seconds the process exits with status 0, naming the threads.
    """
    deadline = time.monotonic() + grace
    for thread in _stray_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    stray = _stray_threads()
    if stray:
        log.warning("exiting with threads still running: %s", ", ".join(t.name for t in stray))
        logging.shutdown()
        os._exit(0)


def _stray_threads() -> list[threading.Thread]:
    return [
        t for t in threading.enumerate()
        if t is not threading.current_thread() and not t.daemon and t.is_alive()
    ]


if __name__ == "__main__":
    run_worker(Settings())
