"""What the model and dataset upload routes share: spool, ingest, remember the response."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.uploads import spool
from core import idempotency
from core.db import new_session, session_scope
from core.models import Tenant
from core.settings import get_settings


async def handle_upload(
    request: Request,
    tenant: Tenant,
    *,
    route: str,
    idempotency_key: str | None,
    create: Callable[..., Any],
    render: Callable[[Any], dict[str, Any]],
) -> JSONResponse:
    def _lookup() -> tuple[int, dict[str, Any]] | None:
        with new_session() as session:
            return idempotency.lookup(session, tenant.id, idempotency_key, route)

    previous = await run_in_threadpool(_lookup)
    if previous is not None:
        return JSONResponse(previous[1], status_code=previous[0])
    settings = get_settings()
    upload = await spool(request, settings.resolved_work_dir / "uploads", settings.max_upload_bytes)
    name = upload.fields.get("name") or request.query_params.get("name") or ""

    def _ingest() -> dict[str, Any]:
        with session_scope() as session:
            record = create(session, tenant.id, path=upload.path, sha256=upload.sha256, size=upload.size,
                            name=name[:300], filename=(upload.filename or "")[:300])
            body = render(record)
            idempotency.remember(session, tenant.id, idempotency_key, route, 201, body)
        return body

    try:
        body = await run_in_threadpool(_ingest)
    finally:
        upload.discard()
    return JSONResponse(body, status_code=201)
