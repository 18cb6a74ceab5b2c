"""Per-tenant quotas and rate limits: requests past the rate are 429 with Retry-After (in memory
and on Redis) and leave other tenants alone; a tenant never runs more jobs than its limit, even
with two workers claiming at once (SQLite and PostgreSQL), and its next job runs when a slot
frees; submits past the queued limit are 429; uploads past the storage quota are 413 and store
nothing; ``shrink admin set-quota`` sets what ``GET /v1/quota`` shows."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from bench.stack import REDIS_URL_BASE
from core.models import Job, StoredModel, Tenant, utcnow
from tests.core.test_admin_cli import Shrink, _env
from tests.services import clear_caches, require_service

REDIS_URL = f"{REDIS_URL_BASE}/9"


def _tenant(session, name: str, **quota: int) -> tuple[str, str]:
    """A tenant with the given quotas and an API key: (tenant id, key)."""
    from core.tenants import service

    tenant = service.create_tenant(session, name)
    _, key = service.create_api_key(session, tenant.id)
    if quota:
        service.set_quota(session, tenant.id, **quota)
    return tenant.id, key


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _model(session, tenant_id: str, size: int = 1) -> str:
    model_id = f"mdl_{uuid.uuid4().hex[:20]}"
    session.add(StoredModel(id=model_id, tenant_id=tenant_id, name="m", format="onnx", size_bytes=size, sha256="0" * 64,
                            storage_key=f"tenants/{tenant_id}/models/{model_id}/upload", info={}))
    session.flush()
    return model_id


def _queued_job(session, tenant_id: str, model_id: str) -> str:
    job_id = f"job_{uuid.uuid4().hex[:20]}"
    session.add(Job(id=job_id, tenant_id=tenant_id, model_id=model_id, enqueued_at=utcnow()))
    session.flush()
    return job_id


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The API in this process on a migrated SQLite database; the data folder is returned."""
    for key in [k for k in os.environ if k.startswith("SHRINK_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SHRINK_ENV", "test")
    monkeypatch.setenv("SHRINK_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SHRINK_RATE_LIMIT_NAMESPACE", f"test-{uuid.uuid4().hex}")
    clear_caches()
    from core.db import migrate

    migrate()
    try:
        yield tmp_path / "var"
    finally:
        from core.db import get_engine

        get_engine().dispose()
        clear_caches()


def _client() -> TestClient:
    from api.app import create_app

    return TestClient(create_app())


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_requests_past_the_rate_answer_429_with_retry_after_and_spare_other_tenants(
    app_env: Path, storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if storage == "redis":
        require_service("redis", "127.0.0.1", 6379)
        # A database no fixture flushes; the test's keys carry its own namespace (app_env).
        monkeypatch.setenv("SHRINK_RATE_LIMIT_STORAGE", REDIS_URL)
        clear_caches()
    from core.db import session_scope
    from core.tenants.quotas import rate_limit_storage_uri

    assert rate_limit_storage_uri().startswith(f"{storage}://")
    rate = 5
    with session_scope() as session:
        _, busy = _tenant(session, "busy", requests_per_second=rate)
        _, other = _tenant(session, "other", requests_per_second=rate)
    client = _client()
    answers = [client.get("/v1/quota", headers=_auth(busy)) for _ in range(rate + 1)]
    others = [client.get("/v1/quota", headers=_auth(other)) for _ in range(rate)]
    refused = [a for a in answers if a.status_code == 429]
    assert [a.status_code for a in answers].count(200) == rate and len(refused) == 1
    assert refused[0].json()["error"]["code"] == "rate_limited"
    assert refused[0].headers["Retry-After"] == "1"  # a one-second window
    assert refused[0].json()["error"]["detail"]["limit_per_second"] == rate
    assert all(a.status_code == 200 for a in others)
    # Every authenticated route counts, not only this one.
    assert client.get("/v1/models", headers=_auth(busy)).status_code == 429
    if storage == "redis":
        import redis

        from core.settings import get_settings

        server = redis.Redis.from_url(REDIS_URL)
        keys = list(server.scan_iter(f"*{get_settings().rate_limit_namespace}*"))
        assert keys  # the counts were kept in Redis, not in this process
        server.delete(*keys)


def test_the_broker_redis_keeps_the_counts_unless_a_storage_is_named(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.tenants.quotas import rate_limit_storage_uri

    assert rate_limit_storage_uri() == "memory://"  # the embedded default
    monkeypatch.setenv("SHRINK_BROKER_URL", REDIS_URL)
    clear_caches()
    assert rate_limit_storage_uri() == REDIS_URL
    monkeypatch.setenv("SHRINK_RATE_LIMIT_STORAGE", "memory://")
    clear_caches()
    assert rate_limit_storage_uri() == "memory://"


def test_two_workers_claiming_at_once_never_run_two_jobs_past_the_running_limit(db_env: dict[str, str]) -> None:
    from core.db import new_session, session_scope
    from core.jobs import lease
    from core.jobs.states import JobState

    with session_scope() as session:
        tenant_id, _ = _tenant(session, "one-at-a-time", max_running_jobs=1)
        model_id = _model(session, tenant_id)
        jobs = [_queued_job(session, tenant_id, model_id) for _ in range(4)]
    for _ in range(2):  # a round with four idle jobs, then a round with one still running
        barrier = threading.Barrier(len(jobs))
        claims: list[object] = []

        def attempt(job_id: str, worker: str, barrier: threading.Barrier = barrier, claims: list[object] = claims) -> None:
            session = new_session()
            barrier.wait()
            try:
                claims.append(lease.claim(session, job_id, worker))
            finally:
                session.close()

        threads = [threading.Thread(target=attempt, args=(job_id, f"w{i}")) for i, job_id in enumerate(jobs)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        with session_scope() as session:
            running = session.scalar(select(func.count()).select_from(Job).where(Job.tenant_id == tenant_id, Job.state == JobState.RUNNING))
        assert running == 1
    won = [c for c in claims if c is not None]
    assert won == []  # the second round: the slot was still taken
    with session_scope() as session:
        first = session.scalar(select(Job).where(Job.state == JobState.RUNNING))
        waiting = [j for j in jobs if j != first.id]
        first_id, first_worker = first.id, first.worker_id
    # The waiting jobs stay queued, and the reaper's next sweep sends their wake-ups again.
    with new_session() as session:
        resent = {job_id for job_id, _ in lease.requeue_expired(session)}
    assert resent == set(waiting)
    with new_session() as session:
        assert lease.finish(session, first_id, first_worker, result={}, candidates=[], artifacts=[], tenant_id=tenant_id)
    with new_session() as session:
        second = lease.claim(session, waiting[0], "w9")
    assert second is not None and second.job_id == waiting[0]


def test_submits_past_the_queued_limit_answer_429_quota_exceeded(app_env: Path) -> None:
    from core.db import session_scope

    with session_scope() as session:
        tenant_id, key = _tenant(session, "patient", max_queued_jobs=1)
        model_id = _model(session, tenant_id)
        _queued_job(session, tenant_id, model_id)
    client = _client()
    spec = {"model_id": model_id, "recipe": [{"op": "quantize", "method": "dynamic"}]}
    answer = client.post("/v1/jobs", json=spec, headers=_auth(key))
    assert answer.status_code == 429, answer.text
    error = answer.json()["error"]
    assert error["code"] == "quota_exceeded" and error["detail"] == {"quota": "max_queued_jobs", "limit": 1, "queued_jobs": 1}
    assert "Retry-After" not in answer.headers
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.tenant_id == tenant_id)) == 1


def test_an_upload_past_the_storage_quota_is_413_and_stores_nothing(app_env: Path) -> None:
    from core.db import session_scope

    with session_scope() as session:
        tenant_id, key = _tenant(session, "full", max_storage_bytes=1000)
        _model(session, tenant_id, size=900)
    client = _client()
    answer = client.post("/v1/models", content=b"\0" * 200, headers={**_auth(key), "Content-Type": "application/octet-stream"})
    assert answer.status_code == 413, answer.text
    error = answer.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["detail"] == {"quota": "max_storage_bytes", "limit_bytes": 1000, "stored_bytes": 900, "upload_bytes": 200}
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(StoredModel).where(StoredModel.tenant_id == tenant_id)) == 1
    artifacts = app_env / "artifacts"
    assert not artifacts.exists() or not any(p.is_file() for p in artifacts.rglob("*"))
    spool = app_env / "work" / "uploads"
    assert not spool.exists() or not any(spool.iterdir())


def test_set_quota_through_the_shrink_command_shows_in_get_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database_url = f"sqlite:///{tmp_path / 'db' / 'shrink.db'}"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = _env(tmp_path, database_url)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env["PYTHONPATH"], os.environ.get("PYTHONPATH")]))
    shrink = Shrink(cwd, env)
    shrink.ok("migrate")
    tenant_id = shrink.ok("admin", "create-tenant", "acme")
    key = shrink.ok("admin", "create-key", tenant_id)
    printed = shrink.ok("admin", "set-quota", tenant_id, "--max-running-jobs", "2", "--max-storage-bytes", "1000000",
                        "--requests-per-second", "50")
    assert printed.splitlines() == ["max_running_jobs\t2", "max_queued_jobs\tunlimited", "max_storage_bytes\t1000000",
                                    "requests_per_second\t50"]
    refused = shrink("admin", "set-quota", tenant_id, "--max-queued-jobs", "-1")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    missing = shrink("admin", "set-quota", "ten_nobody", "--max-queued-jobs", "1")
    assert missing.returncode == 1 and "no tenant ten_nobody" in missing.stderr

    for name in [k for k in os.environ if k.startswith("SHRINK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SHRINK_ENV", "test")
    monkeypatch.setenv("SHRINK_SECRET_KEY", env["SHRINK_SECRET_KEY"])
    monkeypatch.setenv("SHRINK_DATABASE_URL", database_url)
    monkeypatch.setenv("SHRINK_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SHRINK_RATE_LIMIT_NAMESPACE", f"test-{uuid.uuid4().hex}")
    clear_caches()
    try:
        client = _client()
        body = client.get("/v1/quota", headers=_auth(key)).json()
        assert body == {
            "limits": {"max_running_jobs": 2, "max_queued_jobs": None, "max_storage_bytes": 1000000, "requests_per_second": 50},
            "usage": {"running_jobs": 0, "queued_jobs": 0, "storage_bytes": 0},
        }
        # 0 is no limit for this tenant; --clear goes back to the service's defaults (none here).
        shrink.ok("admin", "set-quota", tenant_id, "--max-running-jobs", "0")
        assert client.get("/v1/quota", headers=_auth(key)).json()["limits"]["max_running_jobs"] is None
        shrink.ok("admin", "set-quota", tenant_id, "--clear", "--max-queued-jobs", "3")
        limits = client.get("/v1/quota", headers=_auth(key)).json()["limits"]
        assert limits == {"max_running_jobs": None, "max_queued_jobs": 3, "max_storage_bytes": None, "requests_per_second": None}
    finally:
        from core.db import get_engine

        get_engine().dispose()
        clear_caches()


def test_defaults_from_settings_apply_to_tenants_without_their_own(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHRINK_DEFAULT_MAX_QUEUED_JOBS", "7")
    monkeypatch.setenv("SHRINK_DEFAULT_MAX_RUNNING_JOBS", "2")
    clear_caches()
    from core.db import session_scope

    with session_scope() as session:
        _, plain = _tenant(session, "plain")
        _, own = _tenant(session, "own", max_running_jobs=0)
    client = _client()
    assert client.get("/v1/quota", headers=_auth(plain)).json()["limits"]["max_queued_jobs"] == 7
    assert client.get("/v1/quota", headers=_auth(plain)).json()["limits"]["max_running_jobs"] == 2
    assert client.get("/v1/quota", headers=_auth(own)).json()["limits"]["max_running_jobs"] is None
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 2


def test_an_upload_declared_past_the_storage_quota_is_refused_before_it_is_read(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.routers import uploads_common
    from core.db import session_scope

    with session_scope() as session:
        tenant_id, key = _tenant(session, "declared", max_storage_bytes=1000)

    def spool_not_expected(*args: object, **kwargs: object) -> None:
        raise AssertionError("the body was read although its declared length is past the quota")

    monkeypatch.setattr(uploads_common, "spool", spool_not_expected)
    answer = _client().post("/v1/models", content=b"\0" * 5000, headers={**_auth(key), "Content-Type": "application/octet-stream"})
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["detail"]["upload_bytes"] == 5000


def test_a_finished_job_wakes_its_tenants_oldest_waiting_job(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slot freed by a finishing job is used at once, not at the reaper's next sweep."""
    from datetime import timedelta

    from core import queue
    from core.db import session_scope
    from worker import runner

    with session_scope() as session:
        tenant_id, _ = _tenant(session, "waiting", max_running_jobs=1)
        unlimited_id, _ = _tenant(session, "unlimited")
        model_id = _model(session, tenant_id)
        newer = _queued_job(session, tenant_id, model_id)  # inserted first, submitted later
        oldest = _queued_job(session, tenant_id, model_id)
        session.get(Job, newer).created_at = utcnow() + timedelta(minutes=1)
        session.get(Job, oldest).created_at = utcnow() - timedelta(minutes=5)
        _queued_job(session, unlimited_id, _model(session, unlimited_id))
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(queue, "enqueue_job", lambda job_id, queue_name: sent.append((job_id, queue_name)))
    assert runner.wake_next_waiting(tenant_id) == oldest
    assert sent == [(oldest, "cpu")]
    # Without a running limit nothing waits on a slot: no extra wake-up.
    assert runner.wake_next_waiting(unlimited_id) is None and len(sent) == 1
