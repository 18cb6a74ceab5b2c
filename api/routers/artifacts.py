"""/v1/artifacts/{id}/download: a redirect to a presigned URL (S3) or the bytes (local disk)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, StreamingResponse

from api.deps import CurrentTenant, SessionDep
from api.schemas import ErrorResponse
from core.jobs import service
from core.storage import get_storage

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])


@router.get(
    "/{artifact_id}/download",
    response_model=None,
    summary="Download an artifact: a redirect to a short-lived URL, or the bytes themselves",
    responses={200: {"content": {"application/octet-stream": {}}}, 307: {"description": "presigned URL"}, 401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}},
)
def download(artifact_id: str, session: SessionDep, tenant: CurrentTenant) -> StreamingResponse | RedirectResponse:
    artifact = service.get_artifact(session, tenant.id, artifact_id)
    storage = get_storage()
    url = storage.presigned_url(artifact.storage_key, filename=artifact.filename)
    if url:
        return RedirectResponse(url, status_code=307)
    return StreamingResponse(
        storage.iter_bytes(artifact.storage_key),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{artifact.filename}"',
            "Content-Length": str(artifact.size_bytes),
            "X-Checksum-Sha256": artifact.sha256,
        },
    )
