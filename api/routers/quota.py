"""The tenant's quotas and what it uses of them; and the answer to a request past its rate,
which carries Retry-After."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import CurrentTenant, SessionDep
from api.errors import error_body, responses
from core.errors import RateLimited
from core.tenants import quotas

router = APIRouter(tags=["quota"])


class QuotaLimits(BaseModel):
    max_running_jobs: int | None = Field(description="jobs running at once; more wait queued. null: no limit")
    max_queued_jobs: int | None = Field(description="jobs waiting; a submit past it is 429 quota_exceeded. null: no limit")
    max_storage_bytes: int | None = Field(description="bytes of models, datasets and artifacts; an upload past it is 413 quota_exceeded. null: no limit")
    requests_per_second: int | None = Field(description="requests per second; more are 429 rate_limited with Retry-After. null: no limit")


class QuotaUsage(BaseModel):
    running_jobs: int
    queued_jobs: int
    storage_bytes: int


class QuotaOut(BaseModel):
    limits: QuotaLimits
    usage: QuotaUsage


@router.get("/v1/quota", response_model=QuotaOut, summary="Read the tenant's quotas and what it uses of them",
            responses=responses(401, 429))
def get_quota(session: SessionDep, tenant: CurrentTenant) -> QuotaOut:
    return QuotaOut.model_validate(quotas.describe(session, tenant.id))


async def _rate_limited(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimited)
    retry_after = exc.detail.get("retry_after_seconds")
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(error_body(exc.code, exc.message, exc.detail), status_code=exc.status, headers=headers)


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.add_exception_handler(RateLimited, _rate_limited)
