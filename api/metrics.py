"""Prometheus metrics: request counts and latencies by route, upload bytes, and jobs by state
(read from SQL at scrape time, so every API replica reports the same truth)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db import new_session
from core.models import Job

REGISTRY = CollectorRegistry()
REQUESTS = Counter("shrink_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("shrink_http_request_seconds", "HTTP request latency", ["method", "route"], registry=REGISTRY)


class JobsCollector:
    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("shrink_jobs", "Jobs by state and queue", labels=["state", "queue"])
        try:
            with new_session() as session:
                for state, queue, count in session.execute(select(Job.state, Job.queue, func.count()).group_by(Job.state, Job.queue)):
                    gauge.add_metric([state, queue], count)
        except Exception:  # noqa: BLE001 - a scrape must not fail on a database hiccup
            pass
        yield gauge


REGISTRY.register(JobsCollector())  # type: ignore[arg-type]


class RequestMetrics:
    """Counts and times every request by its route. Plain ASGI rather than ``BaseHTTPMiddleware``:
    that one runs each request in a task group and hands a streamed body over chunk by chunk
    through it, a cost every status poll and every upload chunk paid."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]  # what a request that raises past every handler is answered

        async def send_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], path, str(status[0])).inc()
            LATENCY.labels(scope["method"], path).observe(time.perf_counter() - started)


def render_metrics() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
