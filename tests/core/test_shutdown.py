"""A stopped process (`contextiq worker`, `contextiq serve`) exits even when a library left a non-daemon
thread running."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_SCRIPT = """
import logging, sys, threading, time
from contextiq.core.shutdown import exit_despite_stray_threads
logging.basicConfig(level=logging.INFO)
forever = threading.Thread(target=threading.Event().wait, name="orphaned-connection")
brief = threading.Thread(target=time.sleep, args=(0.2,), name="closing-connection")
if sys.argv[1] == "stuck":
    forever.start()
brief.start()
exit_despite_stray_threads(grace=1.0)
print("returned", flush=True)
"""


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), mode], capture_output=True, text=True, timeout=60
    )


def test_a_thread_that_never_ends_does_not_keep_the_process_alive() -> None:
    done = _run("stuck")
    assert done.returncode == 0
    assert "returned" not in done.stdout  # it exited from inside, after the grace period
    assert "exiting with threads still running: orphaned-connection" in done.stderr


def test_threads_that_end_within_the_grace_period_are_waited_for() -> None:
    done = _run("clean")
    assert done.returncode == 0
    assert "returned" in done.stdout and "still running" not in done.stderr
