"""Models and datasets that tenants upload: inspection in the sandbox, storage, records."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from core import storage as storage_mod
from core.errors import Conflict, NotFound, ShrinkError, from_engine
from core.ids import new_id
from core.logging import get_logger
from core.models import Job, StoredDataset, StoredModel
from core.pagination import paginate
from core.settings import get_settings
from core.tenants import quotas

log = get_logger(__name__)
Kind = Literal["model", "dataset"]


def inspect_upload(kind: Kind, path: Path) -> dict[str, Any]:
    """Detect and inspect an untrusted upload in the sandbox; raise a 4xx error if it is refused."""
    from core.sandbox import run_engine

    settings = get_settings()
    work = Path(tempfile.mkdtemp(prefix="shrink-inspect-", dir=settings.resolved_work_dir))
    try:
        args = ["inspect-model", str(path), str(work / "model")] if kind == "model" else ["inspect-dataset", str(path)]
        result = run_engine(args, work_dir=work, timeout=settings.inspect_timeout_seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not result.ok:
        error = result.error or {"code": "engine_internal", "message": "inspection failed"}
        log.info("upload.refused", kind=kind, code=error.get("code"))
        raise _refusal(error)
    return result.result


# Refusals of uploads that core.errors.ENGINE_CODE_STATUS does not list, and their error class.
def _refusal(error: dict[str, Any]) -> ShrinkError:
    """The service error for an upload the engine refused or failed on."""
    code = str(error.get("code", "engine_internal"))
    refused = from_engine(error)
    if refused.status >= 500 and error.get("user_error"):
        refused.status = 400  # a code this service does not list yet; still the upload's fault
    if code == "resource_limit" and refused.detail.get("limit") in ("memory", "file_size"):
        refused.status = 413  # inspecting it takes more memory or disk than the sandbox allows
    if code == "engine_internal":
        # An exception's own text (which may name server paths) goes to the log, not the user.
        log.warning("upload.inspect_failed", message=str(error.get("message")))
        refused.message = "the upload could not be inspected because of an internal error"
        refused.detail = {}
    return refused


def _create(session: Session, kind: Kind, tenant_id: str, *, path: Path, sha256: str, size: int, name: str, filename: str) -> Any:
    """Inspect in the sandbox (a refused file raises before anything is stored), store, record."""
    quotas.check_storage(session, tenant_id, size)
    info = inspect_upload(kind, path)
    record_id = new_id(kind)
    key = (storage_mod.model_key if kind == "model" else storage_mod.dataset_key)(tenant_id, record_id)
    storage_mod.get_storage().put_file(key, path, sha256=sha256)
    row_type = StoredModel if kind == "model" else StoredDataset
    record = row_type(
        id=record_id, tenant_id=tenant_id, name=name or filename or record_id, filename=filename,
        format=info["format"], size_bytes=size, sha256=sha256, storage_key=key, info=info,
    )
    session.add(record)
    session.flush()
    log.info(f"{kind}.created", id=record_id, tenant_id=tenant_id, format=info["format"], size_bytes=size)
    return record


def create_model(session: Session, tenant_id: str, **upload: Any) -> StoredModel:
    return _create(session, "model", tenant_id, **upload)


def create_dataset(session: Session, tenant_id: str, **upload: Any) -> StoredDataset:
    return _create(session, "dataset", tenant_id, **upload)


def get_model(session: Session, tenant_id: str, model_id: str) -> StoredModel:
    record = session.get(StoredModel, model_id)
    if record is None or record.tenant_id != tenant_id:  # another tenant's id is as if it did not exist
        raise NotFound(f"no model {model_id}", code="model_not_found")
    return record


def get_dataset(session: Session, tenant_id: str, dataset_id: str) -> StoredDataset:
    record = session.get(StoredDataset, dataset_id)
    if record is None or record.tenant_id != tenant_id:
        raise NotFound(f"no dataset {dataset_id}", code="dataset_not_found")
    return record


def list_models(session: Session, tenant_id: str, *, cursor: str | None, limit: int, name: str | None = None, fmt: str | None = None) -> tuple[list[StoredModel], str | None]:
    query = select(StoredModel).where(StoredModel.tenant_id == tenant_id)
    if name:
        query = query.where(StoredModel.name == name)
    if fmt:
        query = query.where(StoredModel.format == fmt)
    return paginate(session, query, StoredModel, cursor=cursor, limit=limit)


def list_datasets(session: Session, tenant_id: str, *, cursor: str | None, limit: int, name: str | None = None, fmt: str | None = None) -> tuple[list[StoredDataset], str | None]:
    query = select(StoredDataset).where(StoredDataset.tenant_id == tenant_id)
    if name:
        query = query.where(StoredDataset.name == name)
    if fmt:
        query = query.where(StoredDataset.format == fmt)
    return paginate(session, query, StoredDataset, cursor=cursor, limit=limit)


def delete_model(session: Session, tenant_id: str, model_id: str) -> None:
    record = get_model(session, tenant_id, model_id)
    in_use = session.scalar(select(exists().where(or_(Job.model_id == model_id, Job.reference_model_id == model_id))))
    if in_use:
        raise Conflict("jobs refer to this model; delete them first", code="model_in_use")
    session.delete(record)
    session.flush()
    storage_mod.get_storage().delete_prefix(f"tenants/{tenant_id}/models/{model_id}/")


def delete_dataset(session: Session, tenant_id: str, dataset_id: str) -> None:
    record = get_dataset(session, tenant_id, dataset_id)
    if session.scalar(select(exists().where(Job.dataset_id == dataset_id))):
        raise Conflict("jobs refer to this dataset; delete them first", code="dataset_in_use")
    session.delete(record)
    session.flush()
    storage_mod.get_storage().delete_prefix(f"tenants/{tenant_id}/datasets/{dataset_id}/")
