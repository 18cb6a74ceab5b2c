"""Prometheus metrics: request counts and latencies by route, upload bytes, and jobs by state
(read from SQL at scrape time, so every API replica reports the same truth)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response

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


async def metrics_middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    path = getattr(route, "path", "unmatched")
    REQUESTS.labels(request.method, path, str(response.status_code)).inc()
    LATENCY.labels(request.method, path).observe(time.perf_counter() - started)
    return response


def render_metrics() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
