"""The API's side of the job lifecycle (docs/architecture.md, job lifecycle): create, read, list
cancel and delete jobs, and read their artifacts. The row in SQL is the truth; the broker carries only
wake-ups. These functions never commit: the route commits, then enqueues. The worker's side, the
lease protocol, is core.jobs.lease."""

from __future__ import annotations

import contextlib
from datetime import datetime
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
from core.jobs.states import TERMINAL, JobState
from core.logging import get_logger
from core.models import Artifact, Candidate, IdempotencyRecord, Job, JobEvent, utcnow
from core.pagination import paginate
from core.storage import get_storage, job_prefix
from core.tenants import quotas
from core.webhooks import check_webhook_url

log = get_logger(__name__)


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


def _check_goal(session: Session, tenant_id: str, spec: JobSpec) -> None:
    """A goal is checked like a recipe: the inputs exist and fit, and what it asks can be met by
    something (a metric the dataset can give, methods that apply to this model)."""
    assert spec.goal is not None
    model = catalog.get_model(session, tenant_id, spec.model_id)
    dataset = catalog.get_dataset(session, tenant_id, spec.dataset_id) if spec.dataset_id else None
    for candidate in (dataset, catalog.get_dataset(session, tenant_id, spec.eval_dataset_id) if spec.eval_dataset_id else None):
        if candidate is not None:
            check_dataset_matches_model(candidate.info, model.info)
    if spec.eval_dataset_id and dataset is None:
        raise ValidationFailed("eval_dataset_id needs dataset_id too (the rows the search calibrates and selects on)",
                               code="dataset_required", detail={"field": "dataset_id"})
    if spec.goal.metric in ("accuracy", "f1", "mse") and not (dataset is not None and dataset.info.get("has_labels")):
        raise ValidationFailed(
            f"goal.metric {spec.goal.metric!r} needs a dataset with labels; pass dataset_id, or use metric 'cosine' (fidelity to the original)",
            code="dataset_required", detail={"field": "goal.metric"},
        )
    applicable = capabilities.goal_methods(model.format, has_dataset=dataset is not None)
    wanted = spec.goal.methods or list(applicable)
    usable = [m for m in wanted if m in applicable]
    if not usable:
        raise ValidationFailed(
            f"goal.methods: none of {', '.join(wanted)} applies to this {model.format} model"
            + ("" if dataset is not None else " without a dataset (pass dataset_id)"),
            code="pass_not_applicable", detail={"field": "goal.methods", "applicable": sorted(applicable)},
        )


def create_job(session: Session, tenant_id: str, spec: JobSpec) -> Job:
    """Validate the whole spec against the registry and the stored inputs, then record the job.
    The caller commits, then enqueues (never inside the open transaction)."""
    quotas.check_queued_jobs(session, tenant_id)
    capabilities.validate_benchmark(spec.benchmark)
    if spec.goal is not None:
        _check_goal(session, tenant_id, spec)
    else:
        passes = [capabilities.validate_step(step, i) for i, step in enumerate(spec.recipe or [])]
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
    add_event(session, job.id, "state", {"state": JobState.QUEUED})
    log.info("job.created", job_id=job.id, tenant_id=tenant_id, steps=len(spec.recipe or []), goal=spec.goal is not None, queue=job.queue)
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
    add_event(session, job.id, "state", {"state": JobState.QUEUED})
    return job


def job_not_found(job_id: str) -> NotFound:
    """What a tenant is told of a job that is not theirs or does not exist (the same answer)."""
    return NotFound(f"no job {job_id}", code="job_not_found")


def get_job(session: Session, tenant_id: str, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.tenant_id != tenant_id:
        raise job_not_found(job_id)
    return job


def list_jobs(session: Session, tenant_id: str, *, cursor: str | None, limit: int, state: JobState | None = None, model_id: str | None = None) -> tuple[list[Job], str | None]:
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
        update(Job).where(Job.id == job_id, Job.state == JobState.QUEUED)
        .values(state=JobState.CANCELED, cancel_requested=True, finished_at=now, progress_message="canceled")
    ).rowcount
    if done:
        add_event(session, job_id, "state", {"state": JobState.CANCELED})
    else:
        flagged = session.execute(
            update(Job).where(Job.id == job_id, Job.state == JobState.RUNNING).values(cancel_requested=True)
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


def delete_job(session: Session, tenant_id: str, job_id: str) -> str:
    """Cancel the job if it has not ended, then delete its rows; returns its storage prefix, for
    ``delete_job_objects`` once the caller has committed (a failed commit then leaves the
    artifacts of a job that still exists, never a job whose artifacts are gone)."""
    job = get_job(session, tenant_id, job_id)
    if job.state not in TERMINAL:
        with contextlib.suppress(Conflict):  # it ended meanwhile: nothing left to cancel
            request_cancel(session, tenant_id, job_id)
    return _delete_rows(session, job)


def _delete_rows(session: Session, job: Job) -> str:
    # The foreign keys cascade too; deleting the children here keeps that from being load-bearing.
    for table in (Artifact, Candidate, JobEvent):
        session.execute(delete(table).where(table.job_id == job.id))
    # The submit's Idempotency-Key would replay a job that no longer exists: it goes too.
    session.execute(delete(IdempotencyRecord).where(
        IdempotencyRecord.tenant_id == job.tenant_id, IdempotencyRecord.body["id"].as_string() == job.id))
    session.execute(delete(Job).where(Job.id == job.id))
    log.info("job.deleted", job_id=job.id, tenant_id=job.tenant_id, state=job.state)
    return job_prefix(job.tenant_id, job.id)


def delete_finished_before(session: Session, cutoff: datetime, *, limit: int = 100) -> list[str]:
    """Delete up to ``limit`` jobs that finished before ``cutoff`` (retention), as DELETE does;
    returns their storage prefixes for ``delete_job_objects`` after the caller commits."""
    jobs = session.scalars(
        select(Job).where(Job.state.in_(list(TERMINAL)), Job.finished_at.is_not(None), Job.finished_at < cutoff)
        .order_by(Job.finished_at).limit(limit)
    ).all()
    return [_delete_rows(session, job) for job in jobs]


def delete_job_objects(prefixes: list[str]) -> None:
    """Remove deleted jobs' artifacts (report included) from storage."""
    storage = get_storage()
    for prefix in prefixes:
        try:
            storage.delete_prefix(prefix)
        except Exception as exc:  # noqa: BLE001 - the rows are gone; a leftover object is logged, not fatal
            log.warning("job.objects_not_deleted", prefix=prefix, error=str(exc))
