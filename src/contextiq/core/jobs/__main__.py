"""`python -m contextiq.core.jobs`: run one worker process with the settings from the environment."""

from __future__ import annotations

from contextiq.core.config import Settings
from contextiq.core.jobs.runner import run_worker

if __name__ == "__main__":
    run_worker(Settings())
