"""The HTTP API (FastAPI). ``create_app()`` is the uvicorn factory: ``shrink api``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import errors
from api.metrics import metrics_middleware
from api.routers import artifacts, benchmarks, catalog, jobs, system
from core.logging import configure_logging
from core.settings import get_settings

DESCRIPTION = """Compression as a service for neural networks: upload a model (and a dataset),
submit a recipe, poll or stream the job, read the benchmark report, download the smaller model.
Every route but health needs `Authorization: Bearer <api key>`."""


def create_app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    app = FastAPI(title="Shrink", version="1.0.0", description=DESCRIPTION)
    errors.install(app)
    app.middleware("http")(metrics_middleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["Location"],
            max_age=600,
        )
    for router in (catalog.models, catalog.datasets, jobs.router, artifacts.router, benchmarks.router, system.router):
        app.include_router(router)
    return app
