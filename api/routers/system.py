"""Capabilities, health, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from api.deps import CurrentTenant
from api.errors import responses
from api.metrics import render_metrics
from api.schemas import Capabilities
from core.capabilities import get_capabilities
from core.db import get_engine
from core.jobs.schemas import SPEC_LIMITS, GoalSpec
from core.queue import check_broker
from core.settings import get_settings
from core.storage import get_storage

router = APIRouter(tags=["system"])


@router.get("/v1/capabilities", response_model=Capabilities,
            summary="List the passes (each step's JSON schema), each op's default method, the formats and the limits",
            responses=responses(401))
def capabilities(tenant: CurrentTenant) -> dict[str, Any]:
    settings = get_settings()
    return {
        **get_capabilities(),
        "devices": ["cpu", "cuda"],
        "queues": ["cpu", "gpu"],
        "limits": {"max_upload_bytes": settings.max_upload_bytes, **SPEC_LIMITS},
        # The goal a job may carry instead of a recipe, as a JSON schema (forms are built from it).
        "goal": GoalSpec.model_json_schema(),
    }


@router.get("/healthz", summary="Liveness: the API process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database, the broker and the storage answer (503 otherwise)")
async def readyz() -> JSONResponse:
    checks: dict[str, str] = {}

    def _db() -> None:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))

    for name, probe in (("database", _db), ("broker", check_broker), ("storage", lambda: get_storage().check())):
        try:
            await run_in_threadpool(probe)
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure makes us unready
            checks[name] = f"error: {type(exc).__name__}: {exc}"[:300]
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "unready", "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
