"""Hand a Shrink job to MLflow: one MLflow run per job, with the best candidate's figures from the
job's report as metrics (speedup per batch size with its 95% interval, size and parameter
ratios, latency, output fidelity, task quality where the job had labelled data), its recipe as a
parameter, the ids as tags, and the report and the best model as artifacts.

    # a job that has run
    python examples/mlflow_handoff.py --job job_... --experiment shrink
    # or run one first, from a job spec file ({"recipe": [...]} or {"goal": {...}}, see below)
    python examples/mlflow_handoff.py --model model.onnx --spec spec.json

SHRINK_URL and SHRINK_API_KEY say where the service is; MLflow's store is MLflow's own choice
(MLFLOW_TRACKING_URI, or ./mlflow.db) unless --tracking-uri names one. A job without a best
candidate logs nothing and exits 1. Needs `pip install mlflow-skinny ./clients/python`; a SQLite
store also needs SQLAlchemy and Alembic (docs/pipelines.md)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from shrink_client import Client, NoBestCandidate

SPEC_KEYS = {"recipe", "goal", "benchmark", "labels", "webhook_url"}
PARAM_LIMIT = 6000  # MLflow's longest parameter value


def load_spec(path: str | Path) -> dict[str, Any]:
    """A job spec file: a recipe or a goal, and what else ``Client.submit`` takes."""
    spec = json.loads(Path(path).read_text())
    if not isinstance(spec, dict) or not spec.keys() & {"recipe", "goal"} or spec.keys() - SPEC_KEYS:
        raise ValueError(f"{path}: a job spec is an object with 'recipe' or 'goal' and at most {sorted(SPEC_KEYS)}")
    return spec


def _numbers(prefix: str, values: dict[str, Any]) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


def best_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The best candidate's figures, flat, as MLflow metrics (docs/benchmarks.md says what each is)."""
    best = next(c for c in report["candidates"] if c["id"] == report["best_candidate_id"])
    ratios, metrics, baseline = best["ratios"], best["metrics"], report["baseline"]
    out: dict[str, float] = {}
    for bs, speedup in ratios["speedup"].items():
        out[f"speedup_b{bs}"] = speedup["value"]
        out[f"speedup_b{bs}_ci95_low"], out[f"speedup_b{bs}_ci95_high"] = speedup["ci95"]
        out[f"latency_p50_ms_b{bs}"] = metrics["latency_ms"][bs]["p50"]
        out[f"baseline_latency_p50_ms_b{bs}"] = baseline["latency_ms"][bs]["p50"]
    out.update(_numbers("", {"size_ratio": ratios.get("size"), "compressed_size_ratio": ratios.get("compressed_size"),
                             "params_ratio": ratios.get("params"), "size_bytes": metrics.get("size_bytes"),
                             "baseline_size_bytes": baseline.get("size_bytes")}))
    out.update(_numbers("fidelity_", metrics.get("fidelity", {})))
    out.update(_numbers("quality_", metrics.get("quality", {})))
    change = ratios.get("quality_change") or {}
    out.update(_numbers("quality_", {"drop": change.get("drop")}))
    return out


def handoff(client: Client, job_id: str, *, experiment: str = "shrink", tracking_uri: str | None = None) -> str:
    """Log the job into MLflow; returns the MLflow run's id. Raises ``NoBestCandidate`` (and logs
    nothing) when the job has no best candidate."""
    job = client.get_job(job_id)
    report = client.report(job_id) if job.state == "succeeded" else {}
    if not report.get("best_candidate_id"):
        raise NoBestCandidate(f"job {job_id} ({job.state}) has no best candidate; nothing to hand off",
                              code="no_best_candidate")
    best = next(c for c in report["candidates"] if c["id"] == report["best_candidate_id"])
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with tempfile.TemporaryDirectory() as folder, mlflow.start_run(run_name=f"shrink-{job_id}") as run:
        mlflow.set_tags({"shrink.job_id": job_id, "shrink.model_id": job.model_id,
                         "shrink.candidate_id": best["id"], **{f"shrink.label.{k}": v for k, v in job.labels.items()}})
        mlflow.log_params({"recipe": json.dumps(best["recipe"])[:PARAM_LIMIT],
                           "benchmark_device": report["config"]["device"],
                           "benchmark_runtime": report["config"]["runtime"]})
        mlflow.log_metrics(best_metrics(report))
        mlflow.log_dict(report, "shrink/report.json")
        mlflow.log_artifact(str(job.download_best(folder)), artifact_path="model")
        return run.info.run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Log a Shrink job's best candidate into MLflow.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--job", help="a job's id (job_...)")
    which.add_argument("--model", help="a model file to compress first (with --spec)")
    parser.add_argument("--spec", help="the job spec, a JSON file (with --model)")
    parser.add_argument("--experiment", default="shrink")
    parser.add_argument("--tracking-uri", help="MLflow's store (default: MLflow's own)")
    args = parser.parse_args(argv)
    if args.model and not args.spec:
        parser.error("--model needs --spec")
    with Client() as client:
        job_id = args.job
        if args.model:
            job = client.submit(client.upload_model(args.model), **load_spec(args.spec))
            job_id = job.wait(progress=False).id
        try:
            run_id = handoff(client, job_id, experiment=args.experiment, tracking_uri=args.tracking_uri)
        except NoBestCandidate as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    print(run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
