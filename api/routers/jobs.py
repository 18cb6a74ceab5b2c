"""/v1/jobs: submit, list, status, cancel, live events, report, artifacts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from api.deps import (
    CurrentTenant,
    Cursor,
    IdempotencyKey,
    LastEventId,
    Limit,
    PolledJob,
    SessionDep,
)
from api.errors import responses
from api.routers.uploads_common import answer_without_work
from api.schemas import ArtifactList, ArtifactOut, JobOut, Page, Report
from core import idempotency
from core.db import new_session
from core.errors import Conflict, NotFound
from core.jobs import events as job_events
from core.jobs import service
from core.jobs.schemas import JobSpec
from core.jobs.states import TERMINAL, JobState
from core.logging import get_logger
from core.models import Job
from core.queue import enqueue_job
from core.storage import get_storage

log = get_logger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS = responses(400, 401, 404, 409, 422)
# A spec submit: 409 is a key used on another route or still in flight, 413 a body past
# MAX_SPEC_BODY_BYTES, 422 also a key reused with another body.
SUBMIT_ERRORS = responses(400, 401, 404, 409, 413, 422)
LIST_ERRORS = responses(400, 401, 422)  # 400: a damaged cursor
JOB_EXAMPLES = {
    "recipe": {
        "summary": "prune, then quantize with the op's default method",
        "value": {
            "model_id": "mdl_7k2q9x4m1c8v3b6n5z0w",
            "dataset_id": "ds_4h8j2k6l0p3o9i1u7y5t",
            "recipe": [
                {"op": "prune", "method": "structured", "ratio": 0.3},
                {"op": "quantize"},
            ],
            "benchmark": {"batch_sizes": [1, 8]},
            "labels": {"team": "search"},
        },
    },
    "one_method": {
        "summary": "one method with its options",
        "value": {"model_id": "mdl_7k2q9x4m1c8v3b6n5z0w", "recipe": [{"op": "quantize", "method": "dynamic", "per_channel": True}]},
    },
}


def submit(session: Any, tenant_id: str, route: str, key: str | None, request: dict[str, Any], create: Any) -> JSONResponse:
    """Claim the Idempotency-Key, create the job and store the response in one transaction, commit,
    then enqueue (never inside the open transaction). A failure releases the key."""
    outcome = idempotency.claim(tenant_id, key, route, idempotency.request_hash(route, request))
    if isinstance(outcome, idempotency.Replay | idempotency.InFlight):
        return answer_without_work(outcome, location=True)
    try:
        job = create()
        body = JobOut.of(job).model_dump(mode="json")
        idempotency.complete(session, outcome, 202, body)
        session.commit()
    except BaseException:
        session.rollback()
        idempotency.release(outcome)
        raise
    try:
        enqueue_job(job.id, job.queue)
    except Exception as exc:  # noqa: BLE001 - the job is recorded; the reaper sends it again
        log.warning("job.enqueue_failed", job_id=job.id, error=str(exc))
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.post("", status_code=202, response_model=JobOut, summary="Submit a job: compress a stored model with a recipe, then benchmark it",
             responses=SUBMIT_ERRORS)
def create_job(spec: Annotated[JobSpec, Body(openapi_examples=JOB_EXAMPLES)], session: SessionDep, tenant: CurrentTenant, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return submit(session, tenant.id, "POST /v1/jobs", idempotency_key, spec.model_dump(mode="json"),
                  lambda: service.create_job(session, tenant.id, spec))


@router.get("", response_model=Page[JobOut], summary="List jobs, newest first, by state or model", responses=LIST_ERRORS)
def list_jobs(
    session: SessionDep, tenant: CurrentTenant, limit: Limit, cursor: Cursor = None,
    state: JobState | None = None, model_id: Annotated[str | None, Query(max_length=40)] = None,
) -> Page[JobOut]:
    rows, next_cursor = service.list_jobs(session, tenant.id, cursor=cursor, limit=limit, state=state, model_id=model_id)
    return Page[JobOut](items=[JobOut.of(j) for j in rows], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut, summary="Read a job: its state, progress, error and result", responses=ERRORS)
async def get_job(job_id: str, job: PolledJob) -> JobOut:
    # The route clients poll: on the event loop, the job read in the key's statement.
    return JobOut.of(job)


@router.post("/{job_id}/cancel", response_model=JobOut, summary="Cancel a job: at once when queued, between passes when running",
             responses=ERRORS)
def cancel_job(job_id: str, session: SessionDep, tenant: CurrentTenant) -> JobOut:
    job = service.request_cancel(session, tenant.id, job_id)
    session.commit()
    return JobOut.of(job)


@router.delete("/{job_id}", status_code=204, summary="Delete a job with its report and artifacts (canceled first if it has not ended)",
               responses=responses(401, 404))
def delete_job(job_id: str, session: SessionDep, tenant: CurrentTenant) -> Response:
    """Cancel the job if it has not ended, then delete it with its candidates, events, report and
    artifacts; its model and dataset may be deleted afterwards."""
    prefix = service.delete_job(session, tenant.id, job_id)
    session.commit()
    service.delete_job_objects([prefix])
    return Response(status_code=204)


@router.get("/{job_id}/artifacts", response_model=ArtifactList, summary="List a job's artifacts: models, report, manifest",
            responses=ERRORS)
def list_artifacts(job_id: str, session: SessionDep, tenant: CurrentTenant) -> ArtifactList:
    return ArtifactList(items=[ArtifactOut.of(a) for a in service.artifacts_of(session, tenant.id, job_id)])


def load_report(session: Any, tenant_id: str, job_id: str) -> dict[str, Any]:
    job = service.get_job(session, tenant_id, job_id)
    report_artifact = next((a for a in service.artifact_rows(session, job) if a.kind == "report"), None)
    if job.state != JobState.SUCCEEDED or report_artifact is None:
        raise Conflict(f"job {job_id} has no report yet (state: {job.state})", code="report_not_ready",
                       detail={"state": job.state})
    report = json.loads(b"".join(get_storage().iter_bytes(report_artifact.storage_key)))
    return {"job_id": job_id, **report}


@router.get(
    "/{job_id}/report",
    response_model=Report,
    response_class=JSONResponse,
    summary="Read a finished job's benchmark report, as JSON or a self-contained HTML page",
    responses={**ERRORS, 200: {"content": {"text/html": {}}, "description": "JSON, or with ?format=html a self-contained page"}},
)
def get_report(
    job_id: str, session: SessionDep, tenant: CurrentTenant, format: Literal["json", "html"] = "json"
) -> Any:
    report = load_report(session, tenant.id, job_id)
    if format == "html":
        from core.catalog import service as catalog
        from core.reports import render_report_html

        job = service.get_job(session, tenant.id, job_id)
        model = catalog.get_model(session, tenant.id, job.model_id)
        dataset = catalog.get_dataset(session, tenant.id, job.dataset_id) if job.dataset_id else None
        page = render_report_html(report, title=f"Shrink report: {job_id}", model=model, dataset=dataset)
        return HTMLResponse(page)
    return JSONResponse(report)


@router.get(
    "/{job_id}/events",
    summary="Stream a job's state, progress and log as server-sent events (resumes after Last-Event-ID)",
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events: state, progress, log"}, **ERRORS},
)
async def stream_events(job_id: str, tenant: CurrentTenant, start: LastEventId) -> StreamingResponse:
    def _check() -> None:
        with new_session() as session:
            service.get_job(session, tenant.id, job_id)

    await run_in_threadpool(_check)
    return StreamingResponse(
        _event_stream(job_id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(job_id: str, after: int) -> AsyncIterator[str]:
    idle = 0.0
    while True:
        def _poll(after_id: int = after) -> tuple[list[Any], JobState]:
            with new_session() as session:
                rows = job_events.events_after(session, job_id, after_id)
                job = session.get(Job, job_id)
                if job is None:
                    raise NotFound(f"no job {job_id}")
                return [(e.id, e.type, e.data, e.created_at) for e in rows], job.state

        rows, state = await run_in_threadpool(_poll)
        for event_id, type_, data, created_at in rows:
            after = event_id
            payload = json.dumps({**data, "at": created_at.isoformat()})
            yield f"id: {event_id}\nevent: {type_}\ndata: {payload}\n\n"
        if state in TERMINAL and not rows:
            yield "event: end\ndata: {}\n\n"
            return
        if rows:
            idle = 0.0
        else:
            idle += 0.5
            if idle >= 15:
                idle = 0.0
                yield ": keep-alive\n\n"
        await asyncio.sleep(0.5)
