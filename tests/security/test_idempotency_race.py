"""Idempotency-Key under real concurrency (docs/architecture.md, idempotency): requests that carry
one key and arrive at once make exactly one record and one stored file; every other answer is the
first one's response or 409 ``idempotency_request_in_flight``, never a 500. A key reused with
another body is 422, and a failed request frees its key. In-process, threads posting at once, on
SQLite and the real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from bench import materials
from core import capabilities, idempotency
from core.db import session_scope
from core.jobs.schemas import JobSpec
from core.models import IdempotencyRecord, Job, StoredModel
from core.settings import get_settings
from core.tenants import service as tenants
from engine.bench.config import BenchmarkConfig

# The registry as the engine publishes it, cut to one pass: submits need no sandbox run.
REGISTRY = {
    "ops": {"quantize": {"default": "dynamic", "methods": ["dynamic"]}},
    "passes": [{"op": "quantize", "method": "dynamic", "name": "quantize.dynamic", "formats": ["onnx"],
                "needs_dataset": False, "config_schema": {"type": "object"}}],
    "benchmark_schema": BenchmarkConfig.model_json_schema(),
}
SPEC = {"model_id": "mdl_a", "recipe": [{"op": "quantize", "method": "dynamic"}]}


@pytest.fixture
def api(db_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, str]]:
    """The app in-process with one tenant and one stored ONNX model row; nothing is sent to a broker."""
    from api.app import create_app
    from api.routers import jobs as jobs_router

    monkeypatch.setattr(capabilities, "_cached", REGISTRY)
    monkeypatch.setattr(jobs_router, "enqueue_job", lambda job_id, queue: None)
    with session_scope() as session:
        tenant = tenants.create_tenant(session, "team")
        _, key = tenants.create_api_key(session, tenant.id)
        session.add(StoredModel(id="mdl_a", tenant_id=tenant.id, name="m", format="onnx", size_bytes=1,
                                sha256="0" * 64, storage_key="k", info={}))
        tenant_id = tenant.id
    with TestClient(create_app(), raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"}) as client:
        yield client, tenant_id


def _at_once(count: int, send: Callable[[], Response]) -> list[Response]:
    barrier = threading.Barrier(count)

    def one(_: int) -> Response:
        barrier.wait()
        return send()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def _stored_files() -> list[Path]:
    root = get_settings().resolved_storage_path
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_concurrent_job_submits_with_one_key_make_one_job_and_never_a_500(api: tuple[TestClient, str]) -> None:
    client, _ = api
    answers = _at_once(10, lambda: client.post("/v1/jobs", json=SPEC, headers={"Idempotency-Key": "submit-1"}))
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {202, 409}, [(r.status_code, r.text[:300]) for r in answers]
    created = {r.json()["id"] for r in answers if r.status_code == 202}
    assert len(created) == 1
    for busy in (r for r in answers if r.status_code == 409):
        assert busy.json()["error"]["code"] == "idempotency_request_in_flight" and int(busy.headers["Retry-After"]) >= 1
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1
    # Once the first is done, the key answers its response, Location included.
    again = client.post("/v1/jobs", json=SPEC, headers={"Idempotency-Key": "submit-1"})
    assert again.status_code == 202 and again.json()["id"] in created
    assert again.headers["Location"] == f"/v1/jobs/{again.json()['id']}"


def test_concurrent_uploads_with_one_key_store_one_file_and_never_a_500(api: tuple[TestClient, str]) -> None:
    client, _ = api
    data = materials.digits_cnn_onnx().read_bytes()
    headers = {"Content-Type": "application/octet-stream", "Idempotency-Key": "upload-1"}
    answers = _at_once(5, lambda: client.post("/v1/models", content=data, params={"name": "cnn"}, headers=headers))
    assert {r.status_code for r in answers} <= {201, 409}, [(r.status_code, r.text[:300]) for r in answers]
    created = {r.json()["id"] for r in answers if r.status_code == 201}
    assert len(created) == 1
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(StoredModel).where(StoredModel.id != "mdl_a")) == 1
    assert len(_stored_files()) == 1
    # Nothing is left in the upload spool by the winner or the losers.
    assert not list((get_settings().resolved_work_dir / "uploads").glob("upload-*"))
    again = client.post("/v1/models", content=data, params={"name": "cnn"}, headers=headers)
    assert again.status_code == 201 and again.json()["id"] in created
    assert len(_stored_files()) == 1


def test_a_key_reused_with_another_body_is_422_and_with_another_route_409(api: tuple[TestClient, str]) -> None:
    client, _ = api
    assert client.post("/v1/jobs", json=SPEC, headers={"Idempotency-Key": "k"}).status_code == 202
    # The same request written differently (key order, an explicit default) is the same request.
    same = client.post("/v1/jobs", json={"recipe": SPEC["recipe"], "model_id": "mdl_a", "labels": {}},
                       headers={"Idempotency-Key": "k"})
    assert same.status_code == 202
    other = client.post("/v1/jobs", json={**SPEC, "labels": {"run": "2"}}, headers={"Idempotency-Key": "k"})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert other.json()["error"]["detail"]["field"] == "Idempotency-Key"
    elsewhere = client.post("/v1/benchmarks", json={"model_id": "mdl_a"}, headers={"Idempotency-Key": "k"})
    assert elsewhere.status_code == 409 and elsewhere.json()["error"]["code"] == "idempotency_key_reused"
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_a_failed_request_frees_its_key(api: tuple[TestClient, str]) -> None:
    client, _ = api
    missing = client.post("/v1/jobs", json={**SPEC, "model_id": "mdl_missing"}, headers={"Idempotency-Key": "retry"})
    assert missing.status_code == 404
    fixed = client.post("/v1/jobs", json=SPEC, headers={"Idempotency-Key": "retry"})
    assert fixed.status_code == 202
    refused = client.post("/v1/models", content=b"not a model", headers={"Content-Type": "application/octet-stream",
                                                                        "Idempotency-Key": "up"})
    assert 400 <= refused.status_code < 500
    with session_scope() as session:
        keys = set(session.scalars(select(IdempotencyRecord.key)))
    assert keys == {"retry"}
    assert not _stored_files()


def test_a_request_while_the_first_is_in_flight_is_told_to_retry(api: tuple[TestClient, str]) -> None:
    client, tenant_id = api
    route = "POST /v1/jobs"
    # The first request holds the key and has not finished.
    held = idempotency.claim(tenant_id, "busy", route, idempotency.request_hash(route, JobSpec(**SPEC).model_dump(mode="json")))
    assert isinstance(held, idempotency.Claim)
    busy = client.post("/v1/jobs", json=SPEC, headers={"Idempotency-Key": "busy"})
    assert busy.status_code == 409 and busy.headers["Retry-After"] == str(idempotency.RETRY_AFTER_SECONDS)
    assert busy.json()["error"]["code"] == "idempotency_request_in_flight"
    idempotency.release(held)
    assert client.post("/v1/jobs", json=SPEC, headers={"Idempotency-Key": "busy"}).status_code == 202
