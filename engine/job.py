"""One job, start to finish, on local files: resolve the model, run the recipe, benchmark the
original against the candidate, and lay the artifacts out for the worker to store.

The worker runs this in a sandboxed child (``python -m engine.cli run-job``); it is also usable
directly from Python.
"""

from __future__ import annotations

import contextlib
import json
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.bench.config import BenchmarkConfig
from engine.bench.provenance import build_manifest, sha256_file
from engine.bench.report import CandidateInput, benchmark_models, choose_best
from engine.context import PassContext
from engine.data import Dataset, load_dataset
from engine.errors import EngineError
from engine.formats import archive
from engine.formats.detect import resolve_upload
from engine.formats.redact import path_free
from engine.model import ModelFile
from engine.pipeline import build_recipe, run_recipe

Emit = Callable[[dict[str, Any]], None]


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: str
    kind: Literal["compress", "benchmark"] = "compress"
    model_path: Path
    model_sha256: str = ""
    reference_model_path: Path | None = None
    dataset_path: Path | None = None
    recipe: list[dict[str, Any]] = Field(default_factory=list)
    benchmark: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    candidate_id: str
    work_dir: Path
    out_dir: Path
    checkpoint_dir: Path | None = None
    # Where the caller asks for a cooperative stop (the sandbox touches CANCEL in its own work
    # folder); default: work_dir/CANCEL.
    cancel_file: Path | None = None
    # A goal job (engine/search): what the user wants, the held-out rows if sent apart, and the
    # candidates an earlier attempt evaluated (the search resumes from them).
    goal: dict[str, Any] | None = None
    eval_dataset_path: Path | None = None
    prior_trials: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def cancel_path(self) -> Path:
        return self.cancel_file or self.work_dir / "CANCEL"


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in (
        "torch", "onnx", "onnxruntime", "transformers", "torch-pruning", "torchao", "tensorly", "numpy",
        "onnx2torch", "onnxscript", "safetensors", "tokenizers",
    ):  # fmt: skip
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


# Unstructured pruning leaves its zeros in dense tensors: the saving exists only in a compressed
# file (digits CNN at 90% sparsity: 227 kB as .onnx, 42 kB deflated), so such models ship deflated.
SPARSE_DELIVERY_THRESHOLD = 0.3


def package_model(model: ModelFile, dest_dir: Path, stem: str) -> tuple[Path, str]:
    """One file per model artifact: a bare .onnx, or a zip (HF folder, ONNX + external data, or a
    sparse model, deflated)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    compress = float(model.meta.get("sparsity") or 0.0) >= SPARSE_DELIVERY_THRESHOLD
    if model.format == "onnx":
        extras = [p for p in model.path.parent.iterdir() if p.is_file() and p != model.path and p.suffix != ".onnx"]
        if not extras and not compress:
            target = dest_dir / f"{stem}.onnx"
            shutil.copyfile(model.path, target)
            return target, "onnx"
        return archive.pack_zip(model.path.parent, dest_dir / f"{stem}.onnx.zip", compress=compress), "onnx"
    return archive.pack_zip(model.path, dest_dir / f"{stem}.hf.zip", compress=compress), "hf"


def as_onnx(model: ModelFile, work_dir: Path) -> ModelFile:
    """An HF checkpoint exported to ONNX, for the onnxruntime target."""
    if model.format == "onnx":
        return model
    from engine.formats import hf, torch_bridge

    dest = work_dir / "model.onnx"
    torch_bridge.export_hf_onnx(hf.load_model(model.path, task_head=True), model.path, dest)
    return ModelFile(path=dest, format="onnx", origin="hf")


def run_job(request: JobRequest, emit: Emit | None = None) -> dict[str, Any]:
    emit = emit or (lambda message: None)
    if request.goal is not None:
        from engine.search.run import run_search

        return run_search(request, emit)
    started = time.time()
    work = request.work_dir
    out = request.out_dir
    out.mkdir(parents=True, exist_ok=True)

    def progress(stage: str, fraction: float, message: str) -> None:
        emit({"type": "progress", "stage": stage, "fraction": round(fraction, 4), "message": message})

    def event(event_name: str, /, **fields: Any) -> None:
        emit({"type": "event", "event": event_name, **fields})

    progress("preparing", 0.0, "loading the model")
    original = resolve_upload(request.model_path, work / "original")
    dataset: Dataset | None = load_dataset(request.dataset_path) if request.dataset_path else None
    bench_config = BenchmarkConfig.model_validate(request.benchmark)
    passes = build_recipe(request.recipe)

    ctx = PassContext(
        work_dir=work / "passes",
        original=original,
        dataset=dataset,
        device=bench_config.device,
        seed=request.seed,
        progress_fn=lambda stage, fraction, message: progress(stage, fraction, message),
        event_fn=event,
        cancel_file=request.cancel_path,
        checkpoint_dir=request.checkpoint_dir,
    )
    if request.kind == "benchmark":
        compressed, records = (
            (resolve_upload(request.reference_model_path, work / "reference"), [])
            if request.reference_model_path
            else (None, [])
        )
    else:
        compressed, records = run_recipe(original, passes, ctx)
    ctx.check_cancel()

    progress("benchmark", 0.0, "measuring the original and the candidate side by side")
    bench_dir = work / "bench"
    baseline_b, candidate_b = original, compressed
    if bench_config.runtime == "onnxruntime":
        baseline_b = as_onnx(original, bench_dir / "baseline")
        candidate_b = as_onnx(compressed, bench_dir / "candidate") if compressed is not None else None
    recipe_run = [r.config | ({"resolved": r.resolved} if r.resolved else {}) for r in records]
    candidates = [CandidateInput(id=request.candidate_id, model=candidate_b, recipe=recipe_run)] if candidate_b else []
    report = benchmark_models(
        baseline_b,
        candidates,
        dataset=dataset,
        config=bench_config,
        progress=lambda f, m: progress("benchmark", f, m),
        tokenizer_folder=original.path if original.format == "hf" else None,
    )
    best = choose_best(report)
    report["best_candidate_id"] = best
    report["sections"] = ctx.report_sections
    report["steps"] = [{"name": r.name, "seconds": round(r.seconds, 3)} for r in records]
    if dataset is not None:
        report["dataset"] = {"rows": len(dataset), "format": dataset.format}

    artifacts: list[dict[str, Any]] = []
    if compressed is not None and request.kind == "compress":
        artifacts = model_artifacts(compressed, candidate_b, out, "model", request.candidate_id, best == request.candidate_id, bench_config)
    result = write_outputs(request, original_format=original.format, report=report, artifacts=artifacts,
                           recipe=recipe_run, bench_config=bench_config, started=started)
    progress("done", 1.0, "finished")
    return result


def model_artifacts(model: ModelFile, benchmarked: ModelFile | None, out: Path, stem: str, candidate_id: str,
                    best: bool, bench_config: BenchmarkConfig) -> list[dict[str, Any]]:
    """A candidate's model files: as produced, and for an HF checkpoint benchmarked on
    onnxruntime, the ONNX export that was measured."""
    path, fmt = package_model(model, out, stem)
    items = [{"kind": "model", "format": fmt, "path": path.name, "candidate_id": candidate_id, "best": best}]
    if model.format == "hf" and bench_config.runtime == "onnxruntime" and benchmarked is not None:
        onnx_path, _ = package_model(benchmarked, out, f"{stem}-onnx")
        items.append({"kind": "model", "format": "onnx", "path": onnx_path.name, "candidate_id": candidate_id, "best": best})
    return items


def write_outputs(request: JobRequest, *, original_format: str, report: dict[str, Any], artifacts: list[dict[str, Any]],
                  recipe: list[dict[str, Any]], bench_config: BenchmarkConfig, started: float,
                  candidates: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """report.json, manifest.json and result.json in ``out_dir``; returns the result the worker
    records. ``candidates``: every candidate of the job (default: the report's)."""
    out = request.out_dir
    manifest = build_manifest(
        job_id=request.job_id,
        kind=request.kind,
        input_sha256=request.model_sha256 or sha256_file(request.model_path),
        input_format=original_format,
        reference_sha256=sha256_file(request.reference_model_path) if request.reference_model_path else None,
        dataset_sha256=sha256_file(request.dataset_path) if request.dataset_path else None,
        dataset_info=report.get("dataset"),
        recipe=recipe,
        benchmark_config=bench_config.model_dump(),
        seed=request.seed,
        libraries=library_versions(),
        report=report,
        artifacts=artifacts,
        out_dir=out,
        seconds=round(time.time() - started, 3),
    )
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    artifacts = [
        *artifacts,
        {"kind": "report", "format": "json", "path": "report.json", "candidate_id": None, "best": False},
        {"kind": "manifest", "format": "json", "path": "manifest.json", "candidate_id": None, "best": False},
    ]
    result = {
        "candidates": candidates if candidates is not None else [
            {"id": c["id"], "recipe": c["recipe"], "metrics": c["metrics"], "ratios": c["ratios"], "flags": c["flags"]}
            for c in report["candidates"]
        ],
        "best_candidate_id": report.get("best_candidate_id"),
        "artifacts": artifacts,
        **(extra or {}),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def error_payload(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, EngineError):
        return {**exc.to_dict(), "user_error": exc.user_error}
    # An unexpected error's text may quote the sandbox's work folder: the full traceback goes to
    # the worker's log, the user sees the error without paths.
    message = path_free(f"{type(exc).__name__}: {exc}", name="a file of the job")
    return {"code": "engine_internal", "message": message, "detail": {}, "user_error": False}
