"""Nothing left behind: ``DELETE /v1/jobs/{id}`` (cancel first, then the job with its candidates,
events, report and artifacts), retention by the reaper through the same code, and the cleanup of
temporary files at start-up and of ended jobs' work folders. In-process, on SQLite and the real
PostgreSQL, with artifacts in local storage."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from core.db import session_scope
from core.jobs import lease
from core.jobs.events import add_event
from core.models import (
    Artifact,
    Candidate,
    IdempotencyRecord,
    Job,
    JobEvent,
    StoredDataset,
    StoredModel,
    utcnow,
)
from core.settings import get_settings
from core.storage import artifact_key, dataset_key, get_storage, model_key, sha256_file
from core.tenants import service as tenants


def _put(key: str, tmp: Path, content: bytes) -> str:
    src = tmp / "object"
    src.write_bytes(content)
    digest = sha256_file(src)
    get_storage().put_file(key, src, sha256=digest)
    return digest


def _job(tenant_id: str, job_id: str, state: str, tmp: Path, *, finished_ago: timedelta | None = None) -> str:
    """A job on the tenant's model and dataset with a candidate, an event, a report and a model artifact."""
    with session_scope() as session:
        finished = utcnow() - finished_ago if finished_ago is not None else (utcnow() if state in ("succeeded", "failed", "canceled") else None)
        session.add(Job(id=job_id, tenant_id=tenant_id, model_id="mdl_a", dataset_id="ds_a", state=state,
                        enqueued_at=utcnow(), finished_at=finished, worker_id="w1" if state == "running" else None,
                        lease_expires_at=utcnow() + timedelta(minutes=5) if state == "running" else None))
        session.flush()
        add_event(session, job_id, "state", {"state": state})
        session.add(Candidate(id=f"cand_{job_id}_1", job_id=job_id))
        for name in ("report.json", "model.onnx"):
            key = artifact_key(tenant_id, job_id, name)
            digest = _put(key, tmp, name.encode())
            session.add(Artifact(id=f"art_{job_id}_{name[:5]}", tenant_id=tenant_id, job_id=job_id, kind=name[:5],
                                 format="json", filename=name, size_bytes=len(name), sha256=digest, storage_key=key))
    return job_id


@pytest.fixture
def api(db_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[TestClient, str, TestClient]]:
    """The app with two tenants; the first owns a stored model and dataset (in storage too)."""
    from api.app import create_app

    with session_scope() as session:
        tenant = tenants.create_tenant(session, "team")
        _, key = tenants.create_api_key(session, tenant.id)
        other = tenants.create_tenant(session, "other")
        _, other_key = tenants.create_api_key(session, other.id)
        for row, kind, make_key in ((StoredModel, "mdl_a", model_key), (StoredDataset, "ds_a", dataset_key)):
            storage_key = make_key(tenant.id, kind)
            digest = _put(storage_key, tmp_path, kind.encode())
            session.add(row(id=kind, tenant_id=tenant.id, name=kind, format="onnx", size_bytes=5, sha256=digest,
                            storage_key=storage_key, info={}))
        tenant_id = tenant.id
    app = create_app()
    with (TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"}) as client,
          TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {other_key}"}) as stranger):
        yield client, tenant_id, stranger


def _rows(job_id: str) -> dict[str, int]:
    with session_scope() as session:
        return {table.__name__: session.scalar(select(func.count()).select_from(table).where(
            (table.id if table is Job else table.job_id) == job_id)) for table in (Job, Candidate, Artifact, JobEvent)}


def _objects(tenant_id: str, job_id: str) -> list[Path]:
    folder = get_settings().resolved_storage_path / f"tenants/{tenant_id}/jobs/{job_id}"
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_delete_removes_a_finished_job_with_its_records_and_objects_then_its_model_and_dataset_can_go(
    api: tuple[TestClient, str, TestClient], tmp_path: Path
) -> None:
    client, tenant_id, _ = api
    job_id = _job(tenant_id, "job_done", "succeeded", tmp_path)
    assert len(_objects(tenant_id, job_id)) == 2
    with session_scope() as session:
        for key, body in (("submit", {"id": job_id}), ("other", {"id": "job_other"})):
            session.add(IdempotencyRecord(tenant_id=tenant_id, key=key, route="POST /v1/jobs", status_code=202, body=body))
    assert client.delete("/v1/models/mdl_a").json()["error"]["code"] == "model_in_use"
    response = client.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 204, response.text
    assert _rows(job_id) == {"Job": 0, "Candidate": 0, "Artifact": 0, "JobEvent": 0}
    assert _objects(tenant_id, job_id) == []
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 404
    # The key that created it would replay a job that is gone: it is free again; others stay.
    with session_scope() as session:
        assert set(session.scalars(select(IdempotencyRecord.key))) == {"other"}
    assert client.delete("/v1/models/mdl_a").status_code == 204
    assert client.delete("/v1/datasets/ds_a").status_code == 204


@pytest.mark.parametrize("state", ["queued", "running"])
def test_delete_cancels_a_job_that_has_not_ended_then_removes_it(
    api: tuple[TestClient, str, TestClient], tmp_path: Path, state: str
) -> None:
    client, tenant_id, _ = api
    job_id = _job(tenant_id, f"job_{state}", state, tmp_path)
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert _rows(job_id)["Job"] == 0 and _objects(tenant_id, job_id) == []
    if state == "running":
        # Its worker learns at its next heartbeat that it no longer holds the job, and stops.
        with session_scope() as session:
            assert lease.heartbeat(session, job_id, "w1")[0] is False


def test_another_tenants_job_is_not_found_and_stays(api: tuple[TestClient, str, TestClient], tmp_path: Path) -> None:
    client, tenant_id, stranger = api
    job_id = _job(tenant_id, "job_mine", "succeeded", tmp_path)
    response = stranger.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"
    assert _rows(job_id)["Job"] == 1 and len(_objects(tenant_id, job_id)) == 2


def test_openapi_documents_the_delete_route() -> None:
    from api.app import create_app

    operation = create_app().openapi()["paths"]["/v1/jobs/{job_id}"]["delete"]
    assert {"204", "401", "404"} <= set(operation["responses"])


def test_reaper_deletes_finished_jobs_past_the_retention_only(
    api: tuple[TestClient, str, TestClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.jobs import reaper

    _, tenant_id, _ = api
    old = _job(tenant_id, "job_old", "succeeded", tmp_path, finished_ago=timedelta(days=3))
    recent = _job(tenant_id, "job_recent", "failed", tmp_path, finished_ago=timedelta(hours=1))
    running = _job(tenant_id, "job_running", "running", tmp_path)
    assert reaper.delete_expired_jobs() == []  # no retention set: everything is kept
    monkeypatch.setenv("SHRINK_JOB_RETENTION_DAYS", "1")
    get_settings.cache_clear()
    # A running job whose row says it finished long ago (it was requeued) is not finished.
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == running).values(finished_at=utcnow() - timedelta(days=9)))
    reaper.sweep()
    assert _rows(old) == {"Job": 0, "Candidate": 0, "Artifact": 0, "JobEvent": 0}
    assert _objects(tenant_id, old) == []
    assert _rows(recent)["Job"] == 1 and len(_objects(tenant_id, recent)) == 2
    assert _rows(running)["Job"] == 1


def _file(path: Path, age_seconds: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return _aged(path, age_seconds)


def _aged(path: Path, age_seconds: float) -> Path:
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return path


def test_start_up_removes_stale_partial_uploads_and_inspection_folders_and_keeps_fresh_ones(db_env: dict[str, str]) -> None:
    from api.app import clean_temporary_files

    work = get_settings().resolved_work_dir
    seven_hours = 7 * 3600.0  # past the longest request (6 h by default)
    old_upload = _file(work / "uploads" / "upload-old", seven_hours)
    fresh_upload = _file(work / "uploads" / "upload-fresh")
    _file(work / "shrink-inspect-old" / "model" / "weights")
    old_inspect = _aged(work / "shrink-inspect-old", seven_hours)
    fresh_inspect = _file(work / "shrink-inspect-fresh" / "model").parent
    unrelated = _file(work / "notes.txt", seven_hours)
    assert set(clean_temporary_files()) == {old_upload, old_inspect}
    assert not old_upload.exists() and not old_inspect.exists()
    assert fresh_upload.exists() and fresh_inspect.exists() and unrelated.exists()


def test_reaper_removes_the_work_folders_of_ended_and_deleted_jobs(api: tuple[TestClient, str, TestClient], tmp_path: Path) -> None:
    from core.jobs import reaper

    _, tenant_id, _ = api
    work = get_settings().resolved_work_dir
    folders = {}
    for job_id, state in (("job_ended", "canceled"), ("job_live", "running"), ("job_waiting", "queued")):
        _job(tenant_id, job_id, state, tmp_path)
        folders[job_id] = work / job_id / "checkpoints"
        folders[job_id].mkdir(parents=True)
    folders["job_gone"] = work / "job_gone" / "attempt-1"
    folders["job_gone"].mkdir(parents=True)
    reaper.clean_work_dir()
    assert not (work / "job_ended").exists() and not (work / "job_gone").exists()
    # A running job's folder is in use; a queued one's checkpoints let a retried job resume.
    assert folders["job_live"].exists() and folders["job_waiting"].exists()
