"""The API's records as typed objects. Unknown fields a newer server adds are kept (``extra``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

TERMINAL_STATES = frozenset({"succeeded", "failed", "canceled"})


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class Asset(Record):
    """An uploaded file. ``info`` for a model: inputs/outputs, opset, params; for a dataset:
    rows, arrays, has_labels, has_text."""

    id: str
    name: str
    filename: str
    format: str
    size_bytes: int
    sha256: str
    info: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class Model(Asset):
    """An uploaded model (``mdl_...``)."""


class Dataset(Asset):
    """An uploaded dataset (``ds_...``)."""


class Progress(Record):
    stage: str = ""
    fraction: float = 0.0
    message: str = ""


class JobRecord(Record):
    """A job as the API answers it; ``Job`` and ``AsyncJob`` add the methods."""

    id: str
    kind: str
    state: str
    model_id: str
    dataset_id: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    queue: str = "cpu"
    attempts: int = 0
    progress: Progress = Field(default_factory=Progress)
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    labels: dict[str, Any] = Field(default_factory=dict)
    cancel_requested: bool = False
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str] = Field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"

    @property
    def best_candidate_id(self) -> str | None:
        return (self.result or {}).get("best_candidate_id")

    def _replace_with(self, fresh: JobRecord) -> None:
        for name in JobRecord.model_fields:
            setattr(self, name, getattr(fresh, name))


class Artifact(Record):
    """A file a job produced: ``kind`` is ``model``, ``report``, ``manifest``, ..."""

    id: str
    kind: str
    format: str
    filename: str
    size_bytes: int
    sha256: str
    candidate_id: str | None = None
    best: bool = False
    created_at: datetime | None = None
    links: dict[str, str] = Field(default_factory=dict)


class Page(Record, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class ArtifactList(Record):
    items: list[Artifact]


class Event(Record):
    """One server-sent event of a job; ``id`` is what ``Last-Event-ID`` resumes from."""

    id: int | None = None
    type: str
    at: datetime | None = None


class StateEvent(Event):
    type: Literal["state"] = "state"
    state: str
    error: dict[str, Any] | None = None


class ProgressEvent(Event):
    type: Literal["progress"] = "progress"
    stage: str = ""
    fraction: float = 0.0
    message: str = ""


class LogEvent(Event):
    """A log line of the engine; its fields are kept as they came."""

    type: Literal["log"] = "log"


EVENT_TYPES: dict[str, type[Event]] = {"state": StateEvent, "progress": ProgressEvent, "log": LogEvent}


def best_model_artifact(artifacts: list[Artifact], fmt: str | None = None) -> Artifact | None:
    """The best candidate's model file (``fmt`` picks one when a candidate has several)."""
    found = [a for a in artifacts if a.kind == "model" and a.best and (fmt is None or a.format == fmt)]
    return found[0] if found else None
