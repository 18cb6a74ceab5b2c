"""Run a recipe: passes in order, each in its own work folder, with progress and cancellation."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from engine.context import PassContext
from engine.model import ModelFile
from engine.registry import Pass, build_step


@dataclass
class StepRecord:
    name: str
    config: dict[str, Any]
    seconds: float
    resolved: dict[str, Any] = field(default_factory=dict)


def build_recipe(recipe: list[dict[str, Any]]) -> list[Pass]:
    """Validate every step before anything runs, so a typo fails the job at once."""
    return [build_step(step) for step in recipe]


def run_recipe(model: ModelFile, passes: list[Pass], ctx: PassContext) -> tuple[ModelFile, list[StepRecord]]:
    records: list[StepRecord] = []
    base_dir = ctx.work_dir
    current = model
    for index, step in enumerate(passes):
        ctx.check_cancel()
        ctx.stage = f"step {index + 1}/{len(passes)}: {step.name}"
        ctx.work_dir = base_dir / f"step{index + 1}-{step.name}"
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        ctx.resolved = {}
        ctx.progress(0.0, "starting")
        ctx.event("job.pass.started", step=index + 1, name=step.name)
        step.check(current, ctx)
        started = time.perf_counter()
        current = step.run(current, ctx)
        seconds = time.perf_counter() - started
        records.append(
            StepRecord(
                name=step.name,
                config={"op": step.op, "method": step.method, **step.config.model_dump(mode="json")},
                seconds=seconds,
                resolved=dict(ctx.resolved),
            )
        )
        ctx.progress(1.0, f"done in {seconds:.1f}s")
        ctx.event("job.pass.finished", step=index + 1, name=step.name, seconds=round(seconds, 3))
    ctx.work_dir = base_dir
    return current, records
