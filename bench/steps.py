"""One recipe step run as a job runs it (checked, then run), timed, for the benchmarks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.context import PassContext
from engine.data import Dataset
from engine.model import ModelFile
from engine.registry import build_step


def run_step(step: dict[str, Any], model: ModelFile, dataset: Dataset | None, work: Path) -> tuple[ModelFile, PassContext, float]:
    """The step's output, its context (``resolved``, ``report_sections``) and the seconds it took."""
    work.mkdir(parents=True, exist_ok=True)
    ctx = PassContext(work_dir=work, original=model, dataset=dataset)
    configured = build_step(step)
    configured.check(model, ctx)
    started = time.perf_counter()
    out = configured.run(model, ctx)
    return out, ctx, time.perf_counter() - started
