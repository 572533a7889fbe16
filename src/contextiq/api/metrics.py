"""Prometheus metrics: request latency by route and status, and the database pool."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contextiq.core.db.engine import Database

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _PoolCollector(Collector):
    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterable[Metric]:
        status = self._db.pool_status()
        size = GaugeMetricFamily("contextiq_db_pool_size", "Connections the database pool keeps")
        size.add_metric([], status["size"])
        used = GaugeMetricFamily("contextiq_db_pool_checked_out", "Connections in use")
        used.add_metric([], status["checked_out"])
        idle = GaugeMetricFamily(
            "contextiq_db_pool_idle_lent", "Connections kept out of the pool, idle, for the plain-SQL reads"
        )
        idle.add_metric([], status["idle_lent"])
        yield size
        yield used
        yield idle


class Metrics:
    """A registry per app (so several apps in one process, as in tests, do not clash)."""

    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "contextiq_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=BUCKETS,
        )
        self.registry.register(_PoolCollector(db))

    def render(self) -> bytes:
        """Return the metrics in Prometheus's text format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware timing each request, labelled with its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.latency.labels(scope.get("method", ""), template, str(status)).observe(
                time.perf_counter() - start
            )
