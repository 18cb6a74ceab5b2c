"""/v1/benchmarks: benchmark a stored model alone, or against another, as a job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from api.deps import CurrentTenant, IdempotencyKey, SessionDep
from api.routers.jobs import SUBMIT_ERRORS, submit
from api.schemas import JobOut
from core.jobs import service
from core.jobs.schemas import BenchmarkSpec

router = APIRouter(prefix="/v1/benchmarks", tags=["benchmarks"])
BENCHMARK_EXAMPLES = {
    "against_another": {
        "summary": "a compressed model against its original, at batch sizes 1 and 8",
        "value": {
            "model_id": "mdl_7k2q9x4m1c8v3b6n5z0w",
            "compare_to_model_id": "mdl_2b5n8m1q4w7e0r3t6y9u",
            "benchmark": {"batch_sizes": [1, 8], "time_budget_seconds": 20},
        },
    },
    "alone": {"summary": "one model alone", "value": {"model_id": "mdl_7k2q9x4m1c8v3b6n5z0w"}},
}


@router.post("", status_code=202, response_model=JobOut, summary="Benchmark a stored model alone, or against another, as a job",
             responses=SUBMIT_ERRORS)
def create_benchmark(spec: Annotated[BenchmarkSpec, Body(openapi_examples=BENCHMARK_EXAMPLES)], session: SessionDep, tenant: CurrentTenant, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    return submit(session, tenant.id, "POST /v1/benchmarks", idempotency_key, spec.model_dump(mode="json"),
                  lambda: service.create_benchmark_job(session, tenant.id, spec))
