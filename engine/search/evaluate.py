"""One candidate of the search: build it from its recipe on the calibration/training rows, then
measure it beside the original on the selection rows, with the same benchmark code as every job
(interleaved timing at the goal's batch size; a shorter run than the final report's)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.bench.config import BenchmarkConfig
from engine.bench.report import CandidateInput, benchmark_models
from engine.context import PassContext
from engine.data import Dataset
from engine.model import ModelFile
from engine.pipeline import build_recipe, run_recipe
from engine.search.goal import Goal, objective_gain, quality_drop

# A candidate's timing during the search: enough rounds to rank candidates, far shorter than the
# final report's, which re-measures the chosen ones.
TRIAL_TIME_BUDGET_SECONDS = 3.0
TRIAL_MIN_RUNS = 15
TRIAL_WARMUP_RUNS = 5


@dataclass
class Prepared:
    """What every candidate shares, prepared once per attempt."""

    original: ModelFile
    baseline: ModelFile  # as the benchmark runs it (an HF checkpoint exported to ONNX for onnxruntime)
    fit: Dataset | None
    select: Dataset | None
    held_out: Dataset | None
    tokenizer_folder: Path | None
    bench: BenchmarkConfig


def trial_config(goal: Goal, prepared: Prepared) -> BenchmarkConfig:
    bench = prepared.bench
    rows = len(prepared.select) if prepared.select is not None else bench.fidelity_rows
    return bench.model_copy(update={
        "batch_sizes": [goal.batch_size],
        "measure_memory": goal.objective == "memory",
        "time_budget_seconds": min(bench.time_budget_seconds, TRIAL_TIME_BUDGET_SECONDS),
        "min_runs": min(bench.min_runs, TRIAL_MIN_RUNS),
        "warmup_runs": min(bench.warmup_runs, TRIAL_WARMUP_RUNS),
        "fidelity_rows": rows,
        "min_cosine": None,
        "max_quality_drop": None,
    })


@dataclass
class Trained:
    """Models that structure and recovery training built in this attempt, by their steps: a
    candidate that only adds quantization to steps already run starts from their model. Training
    is most of a transformer candidate's time (minutes against seconds for quantizing), and every
    trained structure is worth measuring both in float and quantized."""

    models: dict[str, tuple[ModelFile, list[dict[str, Any]]]] = field(default_factory=dict)

    @staticmethod
    def key(steps: list[dict[str, Any]]) -> str:
        return json.dumps(steps, sort_keys=True)


def _ran(records: list[Any]) -> list[dict[str, Any]]:
    return [r.config | ({"resolved": r.resolved} if r.resolved else {}) for r in records]


def build(recipe: list[dict[str, Any]], prepared: Prepared, ctx: PassContext, work_dir: Path,
          trained: Trained | None = None) -> tuple[ModelFile, list[dict[str, Any]]]:
    """The candidate model and its recipe as it ran (with what each pass resolved). With
    ``trained``, the steps before a final quantization are taken from there when an earlier
    candidate ran them, and kept there when this one runs them (recipes are deterministic for the
    job's seed, so the model is the one these steps would build again)."""
    if work_dir.exists():
        shutil.rmtree(work_dir)
    ctx.dataset = prepared.fit
    ctx.report_sections = {}
    ends_quantized = bool(recipe) and recipe[-1].get("op") == "quantize"
    head, tail = (recipe[:-1], recipe[-1:]) if ends_quantized else (recipe, [])
    if trained is None or not head:
        ctx.work_dir = work_dir
        model, records = run_recipe(prepared.original, build_recipe(recipe), ctx)
        return model, _ran(records)
    known = trained.models.get(Trained.key(head))
    if known is None or not known[0].path.exists():
        ctx.work_dir = work_dir / "trained"
        model, records = run_recipe(prepared.original, build_recipe(head), ctx)
        known = trained.models[Trained.key(head)] = (model, _ran(records))
    if not tail:
        return known
    ctx.work_dir = work_dir / "quantized"
    model, records = run_recipe(known[0], build_recipe(tail), ctx)
    ctx.work_dir = work_dir
    return model, [*known[1], *_ran(records)]


def as_benchmarked(model: ModelFile, prepared: Prepared, work_dir: Path) -> ModelFile:
    if prepared.bench.runtime != "onnxruntime" or model.format == "onnx":
        return model
    from engine.job import as_onnx

    return as_onnx(model, work_dir)


def measure(candidate_id: str, model: ModelFile, recipe: list[dict[str, Any]], goal: Goal, prepared: Prepared,
            work_dir: Path) -> dict[str, Any]:
    """The candidate's benchmark entry on the selection rows, with its ``gain`` and ``drop``."""
    started = time.monotonic()
    report = benchmark_models(
        prepared.baseline,
        [CandidateInput(id=candidate_id, model=as_benchmarked(model, prepared, work_dir / "bench"), recipe=recipe)],
        dataset=prepared.select,
        config=trial_config(goal, prepared),
        tokenizer_folder=prepared.tokenizer_folder,
    )
    entry = report["candidates"][0]
    return {
        "entry": entry,
        "gain": objective_gain(goal, entry["ratios"]),
        "drop": quality_drop(goal, report["baseline"], entry["metrics"]),
        "seconds": round(time.monotonic() - started, 3),
    }
