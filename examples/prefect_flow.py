"""A Prefect flow that compresses a model with a Shrink service, in three tasks: submit (upload
and submit), wait, and download the best candidate's model. A job that fails, or whose
candidates all miss the goal, fails the wait task and so the flow run.

The job spec comes from a JSON file, so the same flow runs a recipe or a goal:

    {"recipe": [{"op": "quantize"}], "benchmark": {"batch_sizes": [1, 8]}}
    {"goal": {"metric": "cosine", "max_drop": 0.01, "budget_minutes": 30}}

(keys: `recipe` or `goal`, and optionally `benchmark`, `labels`, `webhook_url`).

Run it with SHRINK_URL and SHRINK_API_KEY set (the key from the environment or a Prefect
Secret block, never from code):

    python examples/prefect_flow.py model.onnx spec.json --output compressed/

or deploy `compress_with_shrink` like any flow (`compress_with_shrink.serve(...)`). Needs
`pip install prefect ./clients/python`, in an environment of its own (docs/pipelines.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run
from shrink_client import Client

SPEC_KEYS = {"recipe", "goal", "benchmark", "labels", "webhook_url"}


class JobNotDelivered(RuntimeError):
    """The job failed, was canceled, or has no candidate that meets its goal."""


def load_spec(path: str | Path) -> dict[str, Any]:
    """A job spec file: a recipe or a goal, and what else ``Client.submit`` takes."""
    spec = json.loads(Path(path).read_text())
    if not isinstance(spec, dict) or not spec.keys() & {"recipe", "goal"} or spec.keys() - SPEC_KEYS:
        raise ValueError(f"{path}: a job spec is an object with 'recipe' or 'goal' and at most {sorted(SPEC_KEYS)}")
    return spec


@task(retries=2, retry_delay_seconds=10)
def submit(model_path: str, spec: dict[str, Any], run_id: str) -> str:
    spec = {**spec, "labels": {**spec.get("labels", {}), "prefect_flow_run": run_id}}
    with Client() as client:
        model = client.upload_model(model_path)
        # One job per flow run, even when this task is retried after a lost answer.
        job = client.submit(model, **spec, idempotency_key=f"prefect-{run_id}")
    get_run_logger().info("submitted job %s for model %s", job.id, model.id)
    return job.id


@task
def wait(job_id: str, timeout_seconds: float) -> str:
    with Client() as client:
        job = client.get_job(job_id).wait(timeout_seconds, progress=False)
    if job.state != "succeeded":
        error = job.error or {}
        raise JobNotDelivered(f"job {job_id} {job.state}: {error.get('message', '')} [{error.get('code', job.state)}]")
    if not job.best_candidate_id:
        raise JobNotDelivered(f"job {job_id} has no best candidate: every candidate was flagged (see its report)")
    get_run_logger().info("job %s succeeded; best candidate %s", job_id, job.best_candidate_id)
    return job_id


@task
def download(job_id: str, output_dir: str) -> str:
    with Client() as client:
        job = client.get_job(job_id)
        path = job.download_best(output_dir)
        report = job.report()
    best = next(c for c in report["candidates"] if c["id"] == report["best_candidate_id"])
    speedups = {f"b{bs}": round(s["value"], 2) for bs, s in best["ratios"]["speedup"].items()}
    get_run_logger().info("best model %s: speedup %s, size ratio %.2f", path, speedups, best["ratios"]["size"])
    return str(path)


@flow(name="compress-with-shrink")
def compress_with_shrink(model_path: str, spec_path: str, output_dir: str = "compressed",
                         timeout_seconds: float = 4 * 3600) -> str:
    spec = load_spec(spec_path)
    job_id = submit(model_path, spec, str(flow_run.get_id()))
    return download(wait(job_id, timeout_seconds), output_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compress a model with Shrink, as a Prefect flow run.")
    parser.add_argument("model", help="the model file (ONNX, or a Hugging Face folder's archive)")
    parser.add_argument("spec", help="the job spec, a JSON file")
    parser.add_argument("--output", default="compressed", help="the folder the best model is written to")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds to wait for the job")
    args = parser.parse_args(argv)
    try:
        load_spec(args.spec)  # a wrong file is refused before anything starts or is uploaded
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = compress_with_shrink(args.model, args.spec, args.output, args.timeout, return_state=True)
    if not state.is_completed():
        print(f"the flow run did not complete: {state.message}", file=sys.stderr)
        return 1
    print(state.result())
    return 0


if __name__ == "__main__":
    sys.exit(main())
