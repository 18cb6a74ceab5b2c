"""What the POST routes share: the answer to a request whose Idempotency-Key another request
holds, and, for the model and dataset uploads, spool, claim the key, ingest, remember the response."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.errors import error_body
from api.uploads import spool
from core import idempotency
from core.db import new_session
from core.logging import get_logger
from core.settings import get_settings
from core.storage import get_storage
from core.tenants import quotas
from core.tenants.auth import Principal

log = get_logger(__name__)


def answer_without_work(outcome: idempotency.Replay | idempotency.InFlight, *, location: bool = False) -> JSONResponse:
    """The stored response of the key's first request, or 409 while that request is in flight."""
    if isinstance(outcome, idempotency.Replay):
        headers = {"Location": f"/v1/jobs/{outcome.body['id']}"} if location and "id" in outcome.body else None
        return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)
    body = error_body(
        "idempotency_request_in_flight",
        f"a request with Idempotency-Key {outcome.key!r} is still in progress; retry after {outcome.retry_after} s "
        "to get its response",
        {"field": "Idempotency-Key", "retry_after_seconds": outcome.retry_after},
    )
    return JSONResponse(body, status_code=409, headers={"Retry-After": str(outcome.retry_after)})


# What multipart adds around the file (boundaries, part headers, form fields): a declared
# length this much past the quota may still hold a file that fits.
MULTIPART_ALLOWANCE = 64 * 1024


def _refuse_past_storage_quota(request: Request, tenant_id: str) -> None:
    """Refuse from the declared ``Content-Length``, before a byte is read, an upload that cannot
    fit the tenant's storage quota; the ingest checks the real size again."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        return  # chunked: only the size after spooling is known
    raw = request.headers.get("content-type", "").startswith("application/octet-stream")
    with new_session() as session:
        quotas.check_storage(session, tenant_id, max(0, int(declared) - (0 if raw else MULTIPART_ALLOWANCE)))


async def handle_upload(
    request: Request,
    tenant: Principal,
    *,
    route: str,
    idempotency_key: str | None,
    create: Callable[..., Any],
    render: Callable[[Any], dict[str, Any]],
) -> JSONResponse:
    settings = get_settings()
    await run_in_threadpool(_refuse_past_storage_quota, request, tenant.id)
    # The key is claimed after spooling, because the request's digest is the file's; nothing
    # reaches storage before the claim is won, so a losing request leaves no object behind.
    upload = await spool(request, settings.resolved_work_dir / "uploads", settings.max_upload_bytes)
    try:
        name = upload.fields.get("name") or request.query_params.get("name") or ""
        filename = (upload.filename or "")[:300]
        digest = idempotency.request_hash(route, {"sha256": upload.sha256, "name": name[:300], "filename": filename})
        outcome = await run_in_threadpool(idempotency.claim, tenant.id, idempotency_key, route, digest)
        if isinstance(outcome, idempotency.Replay | idempotency.InFlight):
            return answer_without_work(outcome)

        def _ingest() -> dict[str, Any]:
            stored_key: str | None = None
            with new_session() as session:
                try:
                    record = create(session, tenant.id, path=upload.path, sha256=upload.sha256, size=upload.size,
                                    name=name[:300], filename=filename)
                    stored_key = record.storage_key
                    body = render(record)
                    idempotency.complete(session, outcome, 201, body)
                    session.commit()
                except BaseException:
                    session.rollback()
                    if stored_key is not None:  # stored, but never recorded: no record will ever delete it
                        get_storage().delete_prefix(stored_key)
                    raise
            return body

        try:
            body = await run_in_threadpool(_ingest)
        except BaseException:
            await run_in_threadpool(idempotency.release, outcome)
            raise
    finally:
        upload.discard()
    return JSONResponse(body, status_code=201)
