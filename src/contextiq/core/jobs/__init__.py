"""The job queue: a jobs table with leases and heartbeats, workers that run handlers by kind."""

from __future__ import annotations

from contextiq.core.jobs.queue import JobFailed, JobQueue, Lease, LeaseLost, backoff_seconds
from contextiq.core.jobs.tables import JOB_STATUSES, TERMINAL_STATUSES, JobRow
from contextiq.core.jobs.worker import PAUSE_MARKER, JobContext, JobHandler, Worker

__all__ = [
    "JOB_STATUSES",
    "PAUSE_MARKER",
    "TERMINAL_STATUSES",
    "JobContext",
    "JobFailed",
    "JobHandler",
    "JobQueue",
    "JobRow",
    "Lease",
    "LeaseLost",
    "Worker",
    "backoff_seconds",
]
