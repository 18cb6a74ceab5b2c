"""The worker's side of the job lifecycle: the lease protocol (docs/architecture.md, job
lifecycle). A worker claims a job by taking its lease in one conditional UPDATE, renews it while
it works, and records the result only while it still holds the lease; the reaper requeues jobs
whose lease expired. Every transition is an atomic UPDATE with a WHERE on the expected state, so
two workers (or a worker and a cancel) can never both win.

Unlike core.jobs.service, where the API's route commits, each function here commits (or rolls
back) itself: a worker's step must be durable before it goes on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, aliased

from core.ids import new_id
from core.jobs.events import add_event
from core.jobs.states import JobState
from core.logging import get_logger
from core.models import Artifact, Candidate, Job, utcnow
from core.settings import get_settings
from core.tenants import quotas

log = get_logger(__name__)


@dataclass
class Claim:
    job_id: str
    tenant_id: str
    attempt: int


def claim(session: Session, job_id: str, worker_id: str) -> Claim | None:
    """Take the job's lease if it is queued, or running under an expired lease, and its tenant
    runs fewer jobs than its ``max_running_jobs``. None: someone else holds it, it has ended, it
    does not exist (a duplicate or stale message), or it waits for one of its tenant's slots."""
    settings = get_settings()
    now = utcnow()
    tenant_id = session.scalar(select(Job.tenant_id).where(Job.id == job_id))
    if tenant_id is None:
        session.rollback()
        return None
    limit = quotas.limits_of(session, tenant_id).max_running_jobs
    taking = (
        update(Job)
        .where(Job.id == job_id, Job.cancel_requested.is_(False))
        .where((Job.state == JobState.QUEUED) | ((Job.state == JobState.RUNNING) & (Job.lease_expires_at < now)))
    )
    if limit is not None:
        # The count and the take are one statement, and claims of one tenant's jobs take turns on
        # its row: under READ COMMITTED each statement sees the claims committed before it, so two
        # workers claiming at once cannot both take the last slot.
        quotas.lock_tenant(session, tenant_id)
        other = aliased(Job)
        running = (
            select(func.count()).select_from(other)
            .where(other.tenant_id == tenant_id, other.state == JobState.RUNNING, other.id != job_id)
            .scalar_subquery()
        )
        taking = taking.where(running < limit)
    won = session.execute(
        taking.values(
            state=JobState.RUNNING, worker_id=worker_id, attempts=Job.attempts + 1,
            lease_expires_at=now + timedelta(seconds=settings.lease_seconds), started_at=now,
            progress_stage="starting", progress_fraction=0.0, progress_message="",
        )
    ).rowcount
    if not won:
        if limit is not None and quotas.wait_for_slot(session, job_id):
            session.commit()
            log.info("job.waiting_for_slot", job_id=job_id, tenant_id=tenant_id, max_running_jobs=limit)
        else:
            session.rollback()
        return None
    job = session.get(Job, job_id)
    assert job is not None
    if job.attempts > settings.max_attempts:
        _end(session, job_id, worker_id, JobState.FAILED, error={
            "code": "too_many_attempts",
            "message": f"the job was started {settings.max_attempts} times without finishing (its workers died)",
        })
        session.commit()
        return None
    add_event(session, job_id, "state", {"state": JobState.RUNNING, "attempt": job.attempts, "worker": worker_id})
    session.commit()
    log.info("job.claimed", job_id=job_id, worker_id=worker_id, attempt=job.attempts)
    return Claim(job_id=job_id, tenant_id=job.tenant_id, attempt=job.attempts)


def heartbeat(session: Session, job_id: str, worker_id: str) -> tuple[bool, bool]:
    """Renew the lease. Returns (still_held, cancel_requested)."""
    now = utcnow()
    held = session.execute(
        update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.RUNNING)
        .values(lease_expires_at=now + timedelta(seconds=get_settings().lease_seconds))
    ).rowcount
    cancel = bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
    session.commit()
    return bool(held), cancel


def record_progress(session: Session, job_id: str, worker_id: str, stage: str, fraction: float, message: str) -> None:
    held = session.execute(
        update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.RUNNING)
        .values(progress_stage=stage[:200], progress_fraction=fraction, progress_message=message[:2000])
    ).rowcount
    if held:
        add_event(session, job_id, "progress", {"stage": stage, "fraction": fraction, "message": message})
    session.commit()


def record_candidate(session: Session, job_id: str, worker_id: str, candidate: dict[str, Any]) -> None:
    """A goal job's candidate, recorded as soon as it is evaluated: the search resumes from these
    after a crash, and a canceled job keeps them."""
    held = session.scalar(select(Job.id).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.RUNNING))
    if held:
        row = session.get(Candidate, candidate["id"])
        if row is None or row.job_id == job_id:
            row = row or Candidate(id=candidate["id"], job_id=job_id)
            row.recipe, row.metrics = candidate.get("recipe", []), candidate.get("metrics", {})
            row.ratios, row.flags = candidate.get("ratios", {}), candidate.get("flags", [])
            session.add(row)
            search = candidate.get("metrics", {}).get("search", {})
            add_event(session, job_id, "candidate", {
                "candidate_id": candidate["id"], "recipe": row.recipe, "flags": row.flags,
                **{k: search.get(k) for k in ("state", "gain", "drop", "seconds", "elapsed_seconds", "error")},
            })
    session.commit()


def search_trials(session: Session, job_id: str) -> list[dict[str, Any]]:
    """What earlier attempts of a goal job evaluated, in order (``JobRequest.prior_trials``)."""
    rows = session.scalars(select(Candidate).where(Candidate.job_id == job_id)).all()
    trials = [
        {**r.metrics["search"], "extra": {
            "candidate_id": r.id, "recipe": r.recipe, "ratios": r.ratios,
            "metrics": {k: v for k, v in r.metrics.items() if k != "search"},
        }}
        for r in rows if isinstance(r.metrics, dict) and isinstance(r.metrics.get("search"), dict)
    ]
    return sorted(trials, key=lambda t: t.get("number", 0))


def record_log(session: Session, job_id: str, data: dict[str, Any]) -> None:
    add_event(session, job_id, "log", data)
    session.commit()


def _end(session: Session, job_id: str, worker_id: str, state: JobState, *, error: dict[str, Any] | None = None, result: dict[str, Any] | None = None) -> bool:
    now = utcnow()
    values: dict[str, Any] = {"state": state, "finished_at": now, "lease_expires_at": None, "error": error, "result": result}
    if state == JobState.SUCCEEDED:
        values.update(progress_fraction=1.0, progress_stage="done", progress_message="finished")
    ended = session.execute(
        update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.RUNNING).values(**values)
    ).rowcount
    if ended:
        add_event(session, job_id, "state", {"state": state, **({"error": error} if error else {})})
    return bool(ended)


def finish(session: Session, job_id: str, worker_id: str, *, result: dict[str, Any], candidates: list[dict[str, Any]], artifacts: list[dict[str, Any]], tenant_id: str) -> bool:
    """Record the outcome, replacing whatever an earlier attempt left: exactly one set of
    candidates and artifacts per job. False if the lease was lost (another worker owns the job)."""
    session.execute(delete(Artifact).where(Artifact.job_id == job_id))
    session.execute(delete(Candidate).where(Candidate.job_id == job_id))
    for c in candidates:
        session.add(Candidate(id=c["id"], job_id=job_id, recipe=c.get("recipe", []), metrics=c.get("metrics", {}),
                              ratios=c.get("ratios", {}), flags=c.get("flags", [])))
    for a in artifacts:
        session.add(Artifact(id=new_id("artifact"), tenant_id=tenant_id, job_id=job_id, candidate_id=a.get("candidate_id"),
                             kind=a["kind"], format=a["format"], filename=a["filename"], size_bytes=a["size_bytes"],
                             sha256=a["sha256"], storage_key=a["storage_key"], best=bool(a.get("best"))))
    if not _end(session, job_id, worker_id, JobState.SUCCEEDED, result=result):
        session.rollback()
        return False
    session.commit()
    log.info("job.succeeded", job_id=job_id, worker_id=worker_id, artifacts=len(artifacts))
    return True


def fail(session: Session, job_id: str, worker_id: str, error: dict[str, Any]) -> bool:
    ok = _end(session, job_id, worker_id, JobState.FAILED, error={k: error.get(k) for k in ("code", "message", "detail") if k in error})
    session.commit()
    log.info("job.failed", job_id=job_id, worker_id=worker_id, code=error.get("code"))
    return ok


def mark_canceled(session: Session, job_id: str, worker_id: str) -> bool:
    """A goal job keeps the candidates it found: they are listed in its result."""
    found = session.scalars(select(Candidate).where(Candidate.job_id == job_id)).all()
    result = None
    if found:
        result = {"best_candidate_id": None, "goal_met": False, "candidates": sorted(c.id for c in found),
                  "message": f"canceled after {len(found)} candidates; each is listed with its recipe and figures on the selection rows"}
    ok = _end(session, job_id, worker_id, JobState.CANCELED, result=result)
    session.commit()
    return ok


def requeue_expired(session: Session) -> list[tuple[str, str]]:
    """Jobs whose worker stopped renewing its lease go back to the queue. Returns (id, queue)."""
    now = utcnow()
    rows = session.execute(
        select(Job.id, Job.queue, Job.cancel_requested).where(Job.state == JobState.RUNNING, Job.lease_expires_at < now)
    ).all()
    requeued = []
    for job_id, queue, cancel_requested in rows:
        if cancel_requested:
            changed = session.execute(
                update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING, Job.lease_expires_at < now)
                .values(state=JobState.CANCELED, finished_at=now, lease_expires_at=None)
            ).rowcount
            if changed:
                add_event(session, job_id, "state", {"state": JobState.CANCELED})
            continue
        changed = session.execute(
            update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING, Job.lease_expires_at < now)
            .values(state=JobState.QUEUED, worker_id=None, lease_expires_at=None, enqueued_at=now,
                    progress_message="requeued: the worker stopped renewing its lease")
        ).rowcount
        if changed:
            add_event(session, job_id, "state", {"state": JobState.QUEUED, "reason": "lease_expired"})
            requeued.append((job_id, queue))
    stale_before = now - timedelta(seconds=get_settings().requeue_queued_after_seconds)
    # Queued jobs whose wake-up message was lost (a broker that dropped it, an enqueue that
    # failed after the commit): send another; a duplicate is harmless because claims are atomic.
    for job_id, queue in session.execute(
        select(Job.id, Job.queue).where(Job.state == JobState.QUEUED, Job.enqueued_at < stale_before)
    ).all():
        session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=now))
        requeued.append((job_id, queue))
    session.commit()
    return requeued
