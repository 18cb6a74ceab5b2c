"""What a pass gets besides its model and config: work area, data, progress, cancellation."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import BudgetSpent, Canceled, DatasetRequired

if TYPE_CHECKING:
    from engine.data import Dataset
    from engine.model import ModelFile

ProgressFn = Callable[[str, float, str], None]
EventFn = Callable[..., None]


def _no_progress(stage: str, fraction: float, message: str) -> None:
    return None


def _no_event(event_name: str, /, **fields: Any) -> None:
    return None


@dataclass
class PassContext:
    """Everything a pass may touch. Passes write only under ``work_dir``."""

    work_dir: Path
    original: ModelFile
    dataset: Dataset | None = None
    device: str = "cpu"
    seed: int = 0
    progress_fn: ProgressFn = _no_progress
    event_fn: EventFn = _no_event
    cancel_file: Path | None = None
    # Survives a worker's death: a training pass saves its state here each epoch and resumes
    # from it when the job is delivered again (the worker keeps this folder between attempts).
    checkpoint_dir: Path | None = None
    # Extra sections a pass adds to the job report (e.g. per-layer sensitivity), by pass name.
    report_sections: dict[str, Any] = field(default_factory=dict)
    # Defaults a pass resolved (the manifest records the recipe as it really ran).
    resolved: dict[str, Any] = field(default_factory=dict)
    stage: str = ""
    # A goal job's search stops a candidate in the middle when its time budget is spent
    # (``time.monotonic()`` seconds).
    deadline: float | None = None

    def progress(self, fraction: float, message: str = "") -> None:
        self.progress_fn(self.stage, max(0.0, min(1.0, fraction)), message)

    def event(self, event_name: str, /, **fields: Any) -> None:
        self.event_fn(event_name, **fields)

    def check_cancel(self) -> None:
        """Cooperative cancellation: long passes call this between steps."""
        if self.cancel_file is not None and self.cancel_file.exists():
            raise Canceled("the job was canceled")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise BudgetSpent("the search's time budget is spent")

    def require_dataset(self, why: str) -> Dataset:
        if self.dataset is None:
            raise DatasetRequired(f"this step needs a dataset ({why}); upload one and pass dataset_id")
        return self.dataset

    def subdir(self, name: str) -> Path:
        path = self.work_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def add_report_section(self, name: str, value: Any) -> None:
        self.report_sections[name] = value

    @property
    def threads(self) -> int:
        return int(os.environ.get("SHRINK_ENGINE_THREADS", "0")) or (os.cpu_count() or 1)
