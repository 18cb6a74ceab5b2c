"""/v1/benchmarks: benchmark a stored model alone, or against another, as a job."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import CurrentTenant, IdempotencyKey, SessionDep
from api.routers.jobs import SUBMIT_ERRORS, submit
from api.schemas import JobOut
from core.jobs import service
from core.jobs.schemas import BenchmarkSpec

router = APIRouter(prefix="/v1/benchmarks", tags=["benchmarks"])


@router.post("", status_code=202, response_model=JobOut, responses=SUBMIT_ERRORS)
def create_benchmark(spec: BenchmarkSpec, session: SessionDep, tenant: CurrentTenant, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return submit(session, tenant.id, "POST /v1/benchmarks", idempotency_key, spec.model_dump(mode="json"),
                  lambda: service.create_benchmark_job(session, tenant.id, spec))
