"""Job states are one enum in Python; SQL, the events and the API's JSON keep the plain strings."""

from __future__ import annotations

from sqlalchemy import select, text

from api.schemas import JobOut
from core.db import new_session, session_scope
from core.jobs import lease
from core.jobs.states import TERMINAL, JobState
from core.models import Job, JobEvent, StoredModel, Tenant, utcnow


def test_states_are_stored_and_served_as_their_strings(db_env: dict[str, str]) -> None:
    with session_scope() as s:
        s.add(Tenant(id="ten_a", name="a"))
        s.flush()
        s.add(StoredModel(id="mdl_a", tenant_id="ten_a", name="m", format="onnx", size_bytes=1, sha256="0" * 64, storage_key="k", info={}))
        s.flush()
        s.add(Job(id="job_a", tenant_id="ten_a", model_id="mdl_a", enqueued_at=utcnow()))
    with new_session() as session:
        assert lease.claim(session, "job_a", "w") is not None
    with new_session() as session:
        assert session.execute(text("SELECT state FROM jobs WHERE id = 'job_a'")).scalar_one() == "running"
        job = session.get(Job, "job_a")
        assert job is not None and job.state is JobState.RUNNING
        assert JobOut.of(job).model_dump(mode="json")["state"] == "running"
        assert session.scalars(select(JobEvent.data).where(JobEvent.type == "state")).one() == {
            "state": "running", "attempt": 1, "worker": "w",
        }


def test_terminal_states() -> None:
    assert {str(s) for s in TERMINAL} == {"succeeded", "failed", "canceled"}
    assert [s.value for s in JobState] == ["queued", "running", "succeeded", "failed", "canceled"]
