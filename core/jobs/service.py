"""The job lifecycle (DESIGN.md section 3). The row in SQL is the truth; the broker carries only
wake-ups. A worker claims a job by taking its lease in one conditional UPDATE, renews it while it
works, and records the result only while it still holds the lease; the reaper requeues jobs whose
lease expired. Every transition is an atomic UPDATE with a WHERE on the expected state, so two
workers (or a worker and a cancel) can never both win."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core import capabilities
from core.catalog import service as catalog
from core.catalog.compat import check_dataset_matches_model
from core.errors import Conflict, NotFound, ValidationFailed
from core.ids import new_id
from core.jobs.events import add_event
from core.jobs.schemas import BenchmarkSpec, JobSpec
from core.logging import get_logger
from core.models import Artifact, Candidate, Job, utcnow
from core.pagination import paginate
from core.settings import get_settings
from core.webhooks import check_webhook_url

log = get_logger(__name__)
TERMINAL = ("succeeded", "failed", "canceled")


def _queue_for(benchmark: dict[str, Any]) -> str:
    return "gpu" if benchmark.get("device") == "cuda" else "cpu"


def _check_inputs(session: Session, tenant_id: str, model_id: str, dataset_id: str | None, passes: list[dict[str, Any]]) -> None:
    model = catalog.get_model(session, tenant_id, model_id)
    for index, entry in enumerate(passes):
        if model.format not in entry["formats"]:
            raise ValidationFailed(
                f"recipe[{index}]: {entry['name']} accepts {', '.join(entry['formats'])} models; this model is {model.format}",
                code="pass_not_applicable",
                detail={"field": f"recipe[{index}]", "pass": entry["name"], "model_format": model.format},
            )
        if entry["needs_dataset"] and dataset_id is None:
            raise ValidationFailed(
                f"recipe[{index}]: {entry['name']} needs a dataset; upload one and pass dataset_id",
                code="dataset_required",
                detail={"field": "dataset_id", "pass": entry["name"]},
            )
    if dataset_id is not None:
        dataset = catalog.get_dataset(session, tenant_id, dataset_id)
        check_dataset_matches_model(dataset.info, model.info)


def create_job(session: Session, tenant_id: str, spec: JobSpec) -> Job:
    """Validate the whole spec against the registry and the stored inputs, then record the job.
    The caller commits, then enqueues (never inside the open transaction)."""
    if spec.goal is not None:
        raise ValidationFailed(
            "goal-driven search is not available yet; send a recipe", code="goal_not_supported", detail={"field": "goal"}
        )
    if not spec.recipe:
        raise ValidationFailed("the recipe is empty; give at least one step", code="spec_invalid", detail={"field": "recipe"})
    passes = [capabilities.validate_step(step, i) for i, step in enumerate(spec.recipe)]
    capabilities.validate_benchmark(spec.benchmark)
    _check_inputs(session, tenant_id, spec.model_id, spec.dataset_id, passes)
    if spec.webhook_url:
        check_webhook_url(spec.webhook_url)
    job = Job(
        id=new_id("job"), tenant_id=tenant_id, kind="compress", model_id=spec.model_id, dataset_id=spec.dataset_id,
        spec=spec.model_dump(mode="json"), queue=_queue_for(spec.benchmark), labels=spec.labels,
        webhook_url=spec.webhook_url, enqueued_at=utcnow(),
    )
    session.add(job)
    session.flush()
    add_event(session, job.id, "state", {"state": "queued"})
    log.info("job.created", job_id=job.id, tenant_id=tenant_id, steps=len(spec.recipe), queue=job.queue)
    return job


def create_benchmark_job(session: Session, tenant_id: str, spec: BenchmarkSpec) -> Job:
    capabilities.validate_benchmark(spec.benchmark)
    model = catalog.get_model(session, tenant_id, spec.model_id)
    if spec.compare_to_model_id:
        catalog.get_model(session, tenant_id, spec.compare_to_model_id)
    if spec.dataset_id:
        check_dataset_matches_model(catalog.get_dataset(session, tenant_id, spec.dataset_id).info, model.info)
    if spec.webhook_url:
        check_webhook_url(spec.webhook_url)
    job = Job(
        id=new_id("job"), tenant_id=tenant_id, kind="benchmark", model_id=spec.model_id,
        reference_model_id=spec.compare_to_model_id, dataset_id=spec.dataset_id, spec=spec.model_dump(mode="json"),
        queue=_queue_for(spec.benchmark), labels=spec.labels, webhook_url=spec.webhook_url, enqueued_at=utcnow(),
    )
    session.add(job)
    session.flush()
    add_event(session, job.id, "state", {"state": "queued"})
    return job


def get_job(session: Session, tenant_id: str, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.tenant_id != tenant_id:
        raise NotFound(f"no job {job_id}", code="job_not_found")
    return job


def list_jobs(session: Session, tenant_id: str, *, cursor: str | None, limit: int, state: str | None = None, model_id: str | None = None) -> tuple[list[Job], str | None]:
    query = select(Job).where(Job.tenant_id == tenant_id)
    if state:
        query = query.where(Job.state == state)
    if model_id:
        query = query.where(Job.model_id == model_id)
    return paginate(session, query, Job, cursor=cursor, limit=limit)


def request_cancel(session: Session, tenant_id: str, job_id: str) -> Job:
    job = get_job(session, tenant_id, job_id)
    now = utcnow()
    # A queued job is canceled at once; a running one is flagged and its worker kills the engine.
    done = session.execute(
        update(Job).where(Job.id == job_id, Job.state == "queued")
        .values(state="canceled", cancel_requested=True, finished_at=now, progress_message="canceled")
    ).rowcount
    if done:
        add_event(session, job_id, "state", {"state": "canceled"})
    else:
        flagged = session.execute(
            update(Job).where(Job.id == job_id, Job.state == "running").values(cancel_requested=True)
        ).rowcount
        if not flagged:
            session.refresh(job)
            raise Conflict(f"job {job_id} has already ended ({job.state})", code="job_not_cancelable")
    session.flush()
    session.refresh(job)
    return job


def artifacts_of(session: Session, tenant_id: str, job_id: str) -> list[Artifact]:
    return artifact_rows(session, get_job(session, tenant_id, job_id))


def artifact_rows(session: Session, job: Job) -> list[Artifact]:
    """The artifacts of a job the caller has already checked belongs to its tenant."""
    return list(session.scalars(select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.created_at, Artifact.id)))


def get_artifact(session: Session, tenant_id: str, artifact_id: str) -> Artifact:
    artifact = session.get(Artifact, artifact_id)
    if artifact is None or artifact.tenant_id != tenant_id:
        raise NotFound(f"no artifact {artifact_id}", code="artifact_not_found")
    return artifact


def candidates_of(session: Session, job_id: str) -> list[Candidate]:
    return list(session.scalars(select(Candidate).where(Candidate.job_id == job_id).order_by(Candidate.id)))


# --- the worker's side -------------------------------------------------------------------------


@dataclass
class Claim:
    job_id: str
    tenant_id: str
    attempt: int


def claim(session: Session, job_id: str, worker_id: str) -> Claim | None:
    """Take the job's lease if it is queued, or running under an expired lease. None: someone
    else holds it, it has ended, or it does not exist (a duplicate or stale message)."""
    settings = get_settings()
    now = utcnow()
    won = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.cancel_requested.is_(False))
        .where((Job.state == "queued") | ((Job.state == "running") & (Job.lease_expires_at < now)))
        .values(
            state="running", worker_id=worker_id, attempts=Job.attempts + 1,
            lease_expires_at=now + timedelta(seconds=settings.lease_seconds), started_at=now,
            progress_stage="starting", progress_fraction=0.0, progress_message="",
        )
    ).rowcount
    if not won:
        session.rollback()
        return None
    job = session.get(Job, job_id)
    assert job is not None
    if job.attempts > settings.max_attempts:
        _end(session, job_id, worker_id, "failed", error={
            "code": "too_many_attempts",
            "message": f"the job was started {settings.max_attempts} times without finishing (its workers died)",
        })
        session.commit()
        return None
    add_event(session, job_id, "state", {"state": "running", "attempt": job.attempts, "worker": worker_id})
    session.commit()
    log.info("job.claimed", job_id=job_id, worker_id=worker_id, attempt=job.attempts)
    return Claim(job_id=job_id, tenant_id=job.tenant_id, attempt=job.attempts)


def heartbeat(session: Session, job_id: str, worker_id: str) -> tuple[bool, bool]:
    """Renew the lease. Returns (still_held, cancel_requested)."""
    now = utcnow()
    held = session.execute(
        update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == "running")
        .values(lease_expires_at=now + timedelta(seconds=get_settings().lease_seconds))
    ).rowcount
    cancel = bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
    session.commit()
    return bool(held), cancel


def record_progress(session: Session, job_id: str, worker_id: str, stage: str, fraction: float, message: str) -> None:
    held = session.execute(
        update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == "running")
        .values(progress_stage=stage[:200], progress_fraction=fraction, progress_message=message[:2000])
    ).rowcount
    if held:
        add_event(session, job_id, "progress", {"stage": stage, "fraction": fraction, "message": message})
    session.commit()


def record_log(session: Session, job_id: str, data: dict[str, Any]) -> None:
    add_event(session, job_id, "log", data)
    session.commit()


def _end(session: Session, job_id: str, worker_id: str, state: str, *, error: dict[str, Any] | None = None, result: dict[str, Any] | None = None) -> bool:
    now = utcnow()
    values: dict[str, Any] = {"state": state, "finished_at": now, "lease_expires_at": None, "error": error, "result": result}
    if state == "succeeded":
        values.update(progress_fraction=1.0, progress_stage="done", progress_message="finished")
    ended = session.execute(
        update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == "running").values(**values)
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
    if not _end(session, job_id, worker_id, "succeeded", result=result):
        session.rollback()
        return False
    session.commit()
    log.info("job.succeeded", job_id=job_id, worker_id=worker_id, artifacts=len(artifacts))
    return True


def fail(session: Session, job_id: str, worker_id: str, error: dict[str, Any]) -> bool:
    ok = _end(session, job_id, worker_id, "failed", error={k: error.get(k) for k in ("code", "message", "detail") if k in error})
    session.commit()
    log.info("job.failed", job_id=job_id, worker_id=worker_id, code=error.get("code"))
    return ok


def mark_canceled(session: Session, job_id: str, worker_id: str) -> bool:
    ok = _end(session, job_id, worker_id, "canceled")
    session.commit()
    return ok


def requeue_expired(session: Session) -> list[tuple[str, str]]:
    """Jobs whose worker stopped renewing its lease go back to the queue. Returns (id, queue)."""
    now = utcnow()
    rows = session.execute(
        select(Job.id, Job.queue, Job.cancel_requested).where(Job.state == "running", Job.lease_expires_at < now)
    ).all()
    requeued = []
    for job_id, queue, cancel_requested in rows:
        if cancel_requested:
            changed = session.execute(
                update(Job).where(Job.id == job_id, Job.state == "running", Job.lease_expires_at < now)
                .values(state="canceled", finished_at=now, lease_expires_at=None)
            ).rowcount
            if changed:
                add_event(session, job_id, "state", {"state": "canceled"})
            continue
        changed = session.execute(
            update(Job).where(Job.id == job_id, Job.state == "running", Job.lease_expires_at < now)
            .values(state="queued", worker_id=None, lease_expires_at=None, enqueued_at=now,
                    progress_message="requeued: the worker stopped renewing its lease")
        ).rowcount
        if changed:
            add_event(session, job_id, "state", {"state": "queued", "reason": "lease_expired"})
            requeued.append((job_id, queue))
    stale_before = now - timedelta(seconds=get_settings().requeue_queued_after_seconds)
    # Queued jobs whose wake-up message was lost (a broker that dropped it, an enqueue that
    # failed after the commit): send another; a duplicate is harmless because claims are atomic.
    for job_id, queue in session.execute(
        select(Job.id, Job.queue).where(Job.state == "queued", Job.enqueued_at < stale_before)
    ).all():
        session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=now))
        requeued.append((job_id, queue))
    session.commit()
    return requeued
