"""The job lifecycle on SQLite and the real PostgreSQL: atomic claims, leases, the reaper, one
set of results per job, cancel."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core.db import new_session, session_scope
from core.jobs import lease, service
from core.models import Artifact, Candidate, Job, StoredModel, Tenant, utcnow


def _job(state: str = "queued") -> str:
    with session_scope() as s:
        s.add(Tenant(id="ten_a", name="a"))
        s.flush()
        s.add(StoredModel(id="mdl_a", tenant_id="ten_a", name="m", format="onnx", size_bytes=1, sha256="0" * 64, storage_key="k", info={}))
        s.flush()
        s.add(Job(id="job_a", tenant_id="ten_a", model_id="mdl_a", state=state, enqueued_at=utcnow()))
    return "job_a"


def _artifacts(n: int) -> list[dict]:
    return [{"kind": "model", "format": "onnx", "filename": f"f{i}", "size_bytes": 1, "sha256": "0" * 64, "storage_key": f"k{i}"} for i in range(n)]


def test_only_one_of_many_workers_claims_a_job(db_env: dict[str, str]) -> None:
    job_id = _job()
    results: list[object] = []
    barrier = threading.Barrier(6)

    def attempt(worker: str) -> None:
        session = new_session()
        barrier.wait()
        try:
            results.append(lease.claim(session, job_id, worker))
        finally:
            session.close()

    threads = [threading.Thread(target=attempt, args=(f"w{i}",)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job.state == "running" and job.attempts == 1 and job.lease_expires_at is not None


def test_expired_lease_is_requeued_and_reclaimed_and_the_old_worker_cannot_finish(db_env: dict[str, str]) -> None:
    job_id = _job()
    session = new_session()
    assert lease.claim(session, job_id, "old") is not None
    assert lease.heartbeat(session, job_id, "old") == (True, False)
    # A live lease cannot be taken.
    assert lease.claim(session, job_id, "new") is None
    session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    assert lease.requeue_expired(session) == [(job_id, "cpu")]
    assert session.get(Job, job_id).state == "queued"
    assert lease.claim(session, job_id, "new").attempt == 2
    # The old worker comes back: its heartbeat says it lost the lease, and it cannot finish.
    assert lease.heartbeat(session, job_id, "old")[0] is False
    assert not lease.finish(session, job_id, "old", result={}, candidates=[], artifacts=_artifacts(3), tenant_id="ten_a")
    assert lease.finish(session, job_id, "new", result={"best_candidate_id": None}, candidates=[{"id": "cand_1"}], artifacts=_artifacts(3), tenant_id="ten_a")
    session.close()
    with session_scope() as s:
        assert s.get(Job, job_id).state == "succeeded"
        assert len(s.scalars(select(Artifact).where(Artifact.job_id == job_id)).all()) == 3


def test_second_delivery_leaves_one_set_of_artifacts(db_env: dict[str, str]) -> None:
    job_id = _job()
    session = new_session()
    lease.claim(session, job_id, "w1")
    # An earlier attempt's rows (as if a first delivery stored results, then lost its lease).
    session.add(Candidate(id="cand_old", job_id=job_id))
    session.add(Artifact(id="art_old", tenant_id="ten_a", job_id=job_id, kind="model", format="onnx", filename="x", size_bytes=1, sha256="0" * 64, storage_key="k"))
    session.commit()
    assert lease.finish(session, job_id, "w1", result={}, candidates=[{"id": "cand_1"}], artifacts=_artifacts(2), tenant_id="ten_a")
    # A duplicate message arrives after success: the claim is refused, nothing changes.
    assert lease.claim(session, job_id, "w2") is None
    session.close()
    with session_scope() as s:
        assert sorted(a.filename for a in s.scalars(select(Artifact).where(Artifact.job_id == job_id))) == ["f0", "f1"]
        assert [c.id for c in s.scalars(select(Candidate).where(Candidate.job_id == job_id))] == ["cand_1"]


def test_cancel_of_queued_job_is_immediate_and_of_running_job_is_flagged(db_env: dict[str, str]) -> None:
    job_id = _job()
    session = new_session()
    job = service.request_cancel(session, "ten_a", job_id)
    session.commit()
    assert job.state == "canceled"
    assert lease.claim(session, job_id, "w") is None
    from core.errors import Conflict, NotFound

    with pytest.raises(Conflict):
        service.request_cancel(session, "ten_a", job_id)
    with pytest.raises(NotFound):
        service.request_cancel(session, "ten_other", job_id)
    session.execute(update(Job).where(Job.id == job_id).values(state="queued", cancel_requested=False))
    session.commit()
    lease.claim(session, job_id, "w")
    job = service.request_cancel(session, "ten_a", job_id)
    session.commit()
    assert job.state == "running" and job.cancel_requested
    assert lease.heartbeat(session, job_id, "w") == (True, True)
    assert lease.mark_canceled(session, job_id, "w")
    assert session.get(Job, job_id).state == "canceled"
    session.close()


def test_job_started_too_often_fails_instead_of_looping(db_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = _job()
    session = new_session()
    for attempt in range(3):
        assert lease.claim(session, job_id, f"w{attempt}") is not None
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    assert lease.claim(session, job_id, "w4") is None
    job = session.get(Job, job_id)
    session.refresh(job)
    assert job.state == "failed" and job.error["code"] == "too_many_attempts"
    session.close()


def test_stale_queued_job_is_sent_again(db_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = _job()
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(enqueued_at=utcnow() - timedelta(hours=1)))
    session = new_session()
    assert lease.requeue_expired(session) == [(job_id, "cpu")]
    assert lease.requeue_expired(session) == []  # enqueued_at was refreshed
    session.close()
    time.sleep(0)
