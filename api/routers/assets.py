"""The routes that models and datasets share (upload, list, read, delete), written once and
instantiated for each: ``/v1/models`` and ``/v1/datasets``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from api.deps import CurrentTenant, Cursor, IdempotencyKey, Limit, SessionDep
from api.errors import responses
from api.routers.uploads_common import handle_upload
from api.schemas import Page


def asset_router(
    *,
    plural: str,
    summary: str,
    out: Any,
    create: Callable[..., Any],
    list_rows: Callable[..., Any],
    get_row: Callable[..., Any],
    delete_row: Callable[..., Any],
) -> APIRouter:
    router = APIRouter(prefix=f"/v1/{plural}", tags=[plural])
    body = {
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}, "name": {"type": "string"}},
                    "required": ["file"],
                }
            },
        },
        "required": True,
    }
    route = f"POST /v1/{plural}"

    @router.post(
        "",
        status_code=201,
        response_model=out,
        summary=summary,
        openapi_extra={"requestBody": body},
        responses=responses(400, 401, 409, 413, 415, 422),  # 409: an Idempotency-Key in flight or used elsewhere
    )
    async def upload(
        request: Request,
        tenant: CurrentTenant,
        idempotency_key: IdempotencyKey = None,
        name: Annotated[str | None, Query(max_length=300, description="display name")] = None,
        filename: Annotated[str | None, Query(max_length=300)] = None,
    ) -> JSONResponse:
        return await handle_upload(
            request, tenant, route=route, idempotency_key=idempotency_key,
            create=create, render=lambda row: out.of(row).model_dump(mode="json"),
        )

    @router.get("", response_model=Page[out], summary=f"List the {plural}, newest first, a page at a time",
                responses=responses(400, 401, 422))  # type: ignore[valid-type]
    def list_(
        session: SessionDep,
        tenant: CurrentTenant,
        limit: Limit,
        cursor: Cursor = None,
        name: Annotated[str | None, Query(max_length=300)] = None,
        format: Annotated[str | None, Query(max_length=20)] = None,
    ) -> Any:
        rows, next_cursor = list_rows(session, tenant.id, cursor=cursor, limit=limit, name=name, fmt=format)
        return {"items": [out.of(r) for r in rows], "next_cursor": next_cursor}

    @router.get("/{record_id}", response_model=out, summary=f"Read one of the {plural}: its record and what inspection found",
                responses=responses(401, 404))
    def get(record_id: str, session: SessionDep, tenant: CurrentTenant) -> Any:
        return out.of(get_row(session, tenant.id, record_id))

    @router.delete("/{record_id}", status_code=204, summary=f"Delete one of the {plural} and its stored file",
                   responses=responses(401, 404, 409))
    def delete(record_id: str, session: SessionDep, tenant: CurrentTenant) -> Response:
        delete_row(session, tenant.id, record_id)
        session.commit()
        return Response(status_code=204)

    return router
