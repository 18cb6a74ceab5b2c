"""What tests need beyond the running stack (``bench.stack``): the real services' presence, and
the service's process-wide caches."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest


def require_service(name: str, host: str, port: int) -> None:
    """These services run on the development machine and in CI (where ``CI`` is set or a
    PostgreSQL server is installed): their absence is a failure there. Elsewhere (a laptop without
    them) the test skips and says why."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        if os.environ.get("CI") or Path("/etc/postgresql").exists():
            pytest.fail(f"{name} is not reachable at {host}:{port}, which this host should run (CI is set or PostgreSQL is installed)")
        pytest.skip(f"{name} is not running at {host}:{port}")


def clear_caches() -> None:
    from core import capabilities, db, queue, settings, storage

    for fn in (settings.get_settings, db.get_engine, db._session_factory, storage.get_storage, queue.get_celery):
        fn.cache_clear()
    capabilities._cached = None
