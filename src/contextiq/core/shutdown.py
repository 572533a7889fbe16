"""The last step of a process that has stopped: exit, even if a library left a thread running."""

from __future__ import annotations

import logging
import os
import threading
import time

__all__ = ["EXIT_GRACE_SECONDS", "exit_despite_stray_threads"]

log = logging.getLogger(__name__)

#: Seconds a stopped process waits for threads that libraries left running before it exits anyway.
EXIT_GRACE_SECONDS = 5.0


def exit_despite_stray_threads(grace: float = EXIT_GRACE_SECONDS) -> None:
    """Make a stopped process exit even if a library left a non-daemon thread running.

    Python waits for every non-daemon thread before it exits. aiosqlite runs each connection in one,
    and a connection whose opening was cancelled (a SIGTERM during a job claim) is never closed: its
    thread then kept a stopped worker alive for good. Call this once the process has shut down
    (everything it did is committed or rolled back): threads that end within `grace` seconds are
    waited for; if any is still running then, the process exits with status 0, naming them.
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
