"""Shared fixtures: the real services on 127.0.0.1 (PostgreSQL, Redis), an S3 endpoint over
real HTTP (moto's server mode), and the whole service started as processes (uvicorn + a Celery
worker). Where they run (the development machine, CI) these never skip; elsewhere they skip with a clear
reason."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.stack import REDIS_URL_BASE, ServiceStack, free_port, postgres_schema
from tests.services import clear_caches, require_service

os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """An S3 endpoint over real HTTP, started by the tests (moto server mode)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    require_service("postgresql", "127.0.0.1", 5432)
    with postgres_schema() as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    require_service("redis", "127.0.0.1", 6379)
    import redis

    db = 7
    redis.Redis.from_url(f"{REDIS_URL_BASE}/{db}").flushdb()
    return f"{REDIS_URL_BASE}/{db}"


def _embedded_env(tmp: Path) -> dict[str, str]:
    return {"SHRINK_ENV": "test", "SHRINK_DATA_DIR": str(tmp / "var")}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """In-process settings on a migrated database: SQLite and the real PostgreSQL."""
    env = _embedded_env(tmp_path)
    if request.param == "postgresql":
        require_service("postgresql", "127.0.0.1", 5432)
        ctx = postgres_schema()
        env["SHRINK_DATABASE_URL"] = ctx.__enter__()
    else:
        ctx = None
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    clear_caches()
    from core.db import migrate

    migrate()
    try:
        yield env
    finally:
        clear_caches()
        if ctx is not None:
            from core.db import get_engine

            get_engine().dispose()
            ctx.__exit__(None, None, None)
        clear_caches()


@pytest.fixture
def embedded_stack(tmp_path: Path) -> Iterator[ServiceStack]:
    """The embedded default: SQLite, local disk, kombu's SQLAlchemy broker on SQLite."""
    with ServiceStack(_embedded_env(tmp_path), tmp_path) as stack:
        yield stack


@pytest.fixture
def production_stack(tmp_path: Path, moto_endpoint: str, redis_url: str) -> Iterator[ServiceStack]:
    """PostgreSQL + Redis + S3 (moto over HTTP): the production configuration, as processes."""
    require_service("postgresql", "127.0.0.1", 5432)
    with postgres_schema() as url:
        env = {
            **_embedded_env(tmp_path),
            "SHRINK_DATABASE_URL": url,
            "SHRINK_BROKER_URL": redis_url,
            "SHRINK_STORAGE_BACKEND": "s3",
            "SHRINK_S3_ENDPOINT_URL": moto_endpoint,
            "SHRINK_S3_BUCKET": f"shrink-{uuid.uuid4().hex[:8]}",
            "SHRINK_S3_ACCESS_KEY_ID": "testing",
            "SHRINK_S3_SECRET_ACCESS_KEY": "testing",
        }
        with ServiceStack(env, tmp_path) as stack:
            yield stack


@pytest.fixture(scope="module")
def shared_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    """One embedded stack for a whole test module; a module may set MAX_UPLOAD_BYTES."""
    tmp = tmp_path_factory.mktemp("stack")
    env = _embedded_env(tmp)
    if hasattr(request.module, "MAX_UPLOAD_BYTES"):
        env["SHRINK_MAX_UPLOAD_BYTES"] = str(request.module.MAX_UPLOAD_BYTES)
    with ServiceStack(env, tmp) as stack:
        yield stack
