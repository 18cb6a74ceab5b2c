"""Response shapes of the API contract (docs/architecture.md, API contract), built from ORM rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from core.jobs.states import JobState
from core.models import Artifact, Candidate, Job, StoredDataset, StoredModel
from core.tenants.auth import JobRow

T = TypeVar("T")


class ErrorDetail(BaseModel):
    code: str
    message: str
    detail: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class AssetOut(BaseModel):
    """An uploaded file: a model or a dataset (the same record shape)."""

    id: str
    name: str
    filename: str
    format: str
    size_bytes: int
    sha256: str
    info: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: StoredModel | StoredDataset) -> AssetOut:
        return cls(id=row.id, name=row.name, filename=row.filename, format=row.format, size_bytes=row.size_bytes,
                   sha256=row.sha256, info=row.info, created_at=row.created_at)


class ModelOut(AssetOut):
    """``info``: format, inputs/outputs (name, shape, dtype), opset, params; HF: model_type."""


class DatasetOut(AssetOut):
    """``info``: format, rows, arrays (shape, dtype), has_labels, has_text."""


class Progress(BaseModel):
    stage: str
    fraction: float
    message: str


class JobOut(BaseModel):
    id: str
    kind: str
    state: JobState
    model_id: str
    dataset_id: str | None
    spec: dict[str, Any]
    queue: str
    attempts: int
    progress: Progress
    error: dict[str, Any] | None
    result: dict[str, Any] | None
    labels: dict[str, Any]
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: dict[str, str]

    @classmethod
    def of(cls, j: Job | JobRow) -> JobOut:
        """From the ORM object or the job as a status poll reads it (``core.tenants.auth.JobRow``)."""
        base = f"/v1/jobs/{j.id}"
        return cls(
            id=j.id, kind=j.kind, state=j.state, model_id=j.model_id, dataset_id=j.dataset_id, spec=j.spec,
            queue=j.queue, attempts=j.attempts,
            progress=Progress(stage=j.progress_stage, fraction=j.progress_fraction, message=j.progress_message),
            error=j.error, result=j.result, labels=j.labels, cancel_requested=j.cancel_requested,
            created_at=j.created_at, started_at=j.started_at, finished_at=j.finished_at,
            links={"self": base, "events": f"{base}/events", "cancel": f"{base}/cancel",
                   "report": f"{base}/report", "artifacts": f"{base}/artifacts"},
        )


class ArtifactOut(BaseModel):
    id: str
    kind: str
    format: str
    filename: str
    size_bytes: int
    sha256: str
    candidate_id: str | None
    best: bool
    created_at: datetime
    links: dict[str, str]

    @classmethod
    def of(cls, a: Artifact) -> ArtifactOut:
        return cls(id=a.id, kind=a.kind, format=a.format, filename=a.filename, size_bytes=a.size_bytes,
                   sha256=a.sha256, candidate_id=a.candidate_id, best=a.best, created_at=a.created_at,
                   links={"download": f"/v1/artifacts/{a.id}/download"})


class ArtifactList(BaseModel):
    items: list[ArtifactOut]


class LatencyStats(BaseModel, extra="allow"):
    p50: float
    p90: float
    p99: float
    p50_ci95: list[float]


class Metrics(BaseModel, extra="allow"):
    size_bytes: int
    params: int
    latency_ms: dict[str, LatencyStats] = Field(default_factory=dict, description="per batch size")
    fidelity: dict[str, Any] | None = None
    quality: dict[str, Any] | None = None


class CandidateReport(BaseModel, extra="allow"):
    id: str
    recipe: list[Any]
    metrics: Metrics
    ratios: dict[str, Any]
    flags: list[str]

    @classmethod
    def of(cls, c: Candidate) -> CandidateReport:
        return cls(id=c.id, recipe=c.recipe, metrics=Metrics.model_validate(c.metrics), ratios=c.ratios, flags=c.flags)


class Report(BaseModel, extra="allow"):
    """Baseline and every candidate, measured side by side."""

    job_id: str
    baseline: Metrics
    candidates: list[CandidateReport]
    best_candidate_id: str | None
    environment: dict[str, Any]


class OpMethods(BaseModel):
    default: str | None = Field(description="the method of a step that names only its op; null: the step must name one")
    methods: list[str]


class Capabilities(BaseModel, extra="allow"):
    passes: list[dict[str, Any]]
    ops: dict[str, OpMethods]
    formats: list[str]
    limits: dict[str, Any]
