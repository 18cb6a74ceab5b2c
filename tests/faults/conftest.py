"""Fixtures of the fault tests: private servers to break (tests/faults/servers.py), the S3 fault
proxy (tests/faults/s3_proxy.py), and the service on the production configuration over them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.conftest import tiny_onnx
from tests.faults.s3_proxy import S3FaultProxy
from tests.faults.servers import PrivatePostgres, PrivateRedis
from tests.services import require_service


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with PrivateRedis(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """One cluster for the session (initdb takes seconds); each test takes a database of its own."""
    require_service("postgresql", "127.0.0.1", 5432)  # installed where the real one runs
    with PrivatePostgres() as server:
        yield server


@pytest.fixture
def s3_proxy(moto_endpoint: str) -> Iterator[S3FaultProxy]:
    host, port = moto_endpoint.removeprefix("http://").split(":")
    proxy = S3FaultProxy((host, int(port)))
    try:
        yield proxy
    finally:
        proxy.close()
