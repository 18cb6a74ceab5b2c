"""The HTTP API (FastAPI). ``create_app()`` is the uvicorn factory: ``shrink api``."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors, openapi
from api.console import headers as console_headers
from api.console import router as console
from api.metrics import RequestMetrics
from api.routers import artifacts, benchmarks, catalog, jobs, quota, system, webhooks
from core.db import dispose_async_engines
from core.jobs.schemas import MAX_SPEC_BODY_BYTES
from core.logging import configure_logging
from core.settings import get_settings
from core.storage import remove_stale_temporary_files

DESCRIPTION = """Compression as a service for neural networks: upload a model (and a dataset),
submit a recipe, poll or stream the job, read the benchmark report, download the smaller model.
Every route but health, readiness, metrics and the console's sign-in needs `Authorization: Bearer
<api key>` (the `bearer` security scheme: **Authorize** in /docs), or the web console's session
cookie (`session`, set by `POST /v1/session`; with it a POST or DELETE also sends `X-CSRF-Token`).
These pages and `/openapi.json` need one too. A recipe step is one of the `RecipeStep`
schemas, as `GET /v1/capabilities` lists them."""


class BodyLimit:
    """Refuse a request body past ``max_bytes`` (413 ``body_too_large``) before a route reads it
    whole: by its Content-Length at once, or as a chunked body streams in. The upload routes
    stream their bodies to disk under their own limit (``SHRINK_MAX_UPLOAD_BYTES``)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, streamed_paths: frozenset[str]):
        self.app, self.max_bytes, self.streamed_paths = app, max_bytes, streamed_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") in self.streamed_paths:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await errors.http_error_response(errors.BodyTooLarge(self.max_bytes))(scope, receive, send)
            return
        seen = 0

        async def receive_bounded() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise errors.BodyTooLarge(self.max_bytes)  # raised in the route, answered by its handler
            return message

        await self.app(scope, receive_bounded, send)


def clean_temporary_files() -> list[Path]:
    """At start-up: remove the partial uploads and inspection folders that an API process which
    crashed or was killed left behind (those older than the longest request)."""
    settings = get_settings()
    return remove_stale_temporary_files(settings.resolved_work_dir, settings.longest_request_seconds)


@asynccontextmanager
async def lifespan(_app: object) -> AsyncIterator[None]:
    # What start-up made (about 125,000 objects: the framework, SQLAlchemy, pydantic) is frozen
    # out of the garbage collector's reach: a full collection over it took 64 ms, a pause that
    # every request in flight waited out (the status polls' p99).
    gc.collect()
    gc.freeze()
    yield
    await dispose_async_engines()


def create_app() -> openapi.ShrinkAPI:
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    clean_temporary_files()
    # FastAPI's own docs pages load from a CDN and its /openapi.json is built on the event loop:
    # api/openapi.py serves all three instead.
    app = openapi.ShrinkAPI(title="Shrink", version="1.0.0", description=DESCRIPTION,
                            openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)
    errors.install(app)
    # Innermost, so that its 413 is counted and carries CORS headers like any answer.
    app.add_middleware(BodyLimit, max_bytes=MAX_SPEC_BODY_BYTES,
                       streamed_paths=frozenset({catalog.models.prefix, catalog.datasets.prefix}))
    app.add_middleware(RequestMetrics)
    app.add_middleware(console_headers.PageHeaders)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["Location"],
            max_age=600,
        )
    for router in (catalog.models, catalog.datasets, jobs.router, artifacts.router, benchmarks.router, system.router, webhooks.router):
        app.include_router(router)
    quota.install(app)
    console.install(app)
    openapi.install(app)
    return app
