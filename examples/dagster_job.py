"""A Dagster job that compresses a model with a Shrink service, in three ops: submit (upload and
submit), wait, and download the best candidate's model. A job that fails, or whose candidates all
miss the goal, fails the wait op and so the run.

The job spec comes from a JSON file, so the same job runs a recipe or a goal:

    {"recipe": [{"op": "quantize"}], "benchmark": {"batch_sizes": [1, 8]}}
    {"goal": {"metric": "cosine", "max_drop": 0.01, "budget_minutes": 30}}

(keys: `recipe` or `goal`, and optionally `benchmark`, `labels`, `webhook_url`).

Run it once, with SHRINK_URL and SHRINK_API_KEY set:

    python examples/dagster_job.py model.onnx spec.json --output compressed/

or load it in Dagster (`dagster dev -f examples/dagster_job.py`) and launch `compress_with_shrink`
with the ops' config. Needs `pip install dagster ./clients/python` (docs/pipelines.md)."""

# No `from __future__ import annotations`: Dagster reads the ops' annotations as types.
import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dagster import (
    Config,
    ConfigurableResource,
    Definitions,
    EnvVar,
    Failure,
    In,
    OpExecutionContext,
    Out,
    RunConfig,
    job,
    op,
)
from shrink_client import Client

SPEC_KEYS = {"recipe", "goal", "benchmark", "labels", "webhook_url"}


def load_spec(path: str | Path) -> dict[str, Any]:
    """A job spec file: a recipe or a goal, and what else ``Client.submit`` takes."""
    spec = json.loads(Path(path).read_text())
    if not isinstance(spec, dict) or not spec.keys() & {"recipe", "goal"} or spec.keys() - SPEC_KEYS:
        raise ValueError(f"{path}: a job spec is an object with 'recipe' or 'goal' and at most {sorted(SPEC_KEYS)}")
    return spec


class Shrink(ConfigurableResource):  # type: ignore[misc]
    """Where the service is; the key comes from the environment or a secret store, never code."""

    url: str
    api_key: str

    def client(self) -> Client:
        return Client(url=self.url, api_key=self.api_key)


class SubmitConfig(Config):  # type: ignore[misc]
    model_path: str
    spec_path: str


class WaitConfig(Config):  # type: ignore[misc]
    timeout_seconds: float = 4 * 3600


class DownloadConfig(Config):  # type: ignore[misc]
    output_dir: str = "compressed"


@op(out=Out(str, description="the job's id"))
def submit(context: OpExecutionContext, config: SubmitConfig, shrink: Shrink) -> str:
    spec = load_spec(config.spec_path)
    spec["labels"] = {**spec.get("labels", {}), "dagster_run": context.run_id}
    with shrink.client() as client:
        model = client.upload_model(config.model_path)
        # One job per run, even when Dagster retries this op after a lost answer.
        job = client.submit(model, **spec, idempotency_key=f"dagster-{context.run_id}")
    context.log.info(f"submitted job {job.id} for model {model.id}")
    return job.id


@op(ins={"job_id": In(str)}, out=Out(str))
def wait(context: OpExecutionContext, config: WaitConfig, shrink: Shrink, job_id: str) -> str:
    with shrink.client() as client:
        job = client.get_job(job_id).wait(config.timeout_seconds, progress=False)
    if job.state != "succeeded":
        error = job.error or {}
        raise Failure(f"job {job_id} {job.state}: {error.get('message', '')} [{error.get('code', job.state)}]",
                      metadata={"job_id": job_id, "state": job.state})
    if not job.best_candidate_id:
        raise Failure(f"job {job_id} has no best candidate: every candidate was flagged (see its report)",
                      metadata={"job_id": job_id})
    context.log.info(f"job {job_id} succeeded; best candidate {job.best_candidate_id}")
    return job_id


@op(ins={"job_id": In(str)}, out=Out(str, description="the downloaded model's path"))
def download(context: OpExecutionContext, config: DownloadConfig, shrink: Shrink, job_id: str) -> str:
    with shrink.client() as client:
        job = client.get_job(job_id)
        path = job.download_best(config.output_dir)
        report = job.report()
    best = next(c for c in report["candidates"] if c["id"] == report["best_candidate_id"])
    speedups = {f"speedup_b{bs}": s["value"] for bs, s in best["ratios"]["speedup"].items()}
    context.add_output_metadata({"job_id": job_id, "path": str(path), "size_ratio": best["ratios"]["size"], **speedups})
    return str(path)


@job
def compress_with_shrink() -> None:
    download(wait(submit()))


defs = Definitions(
    jobs=[compress_with_shrink],
    resources={"shrink": Shrink(url=EnvVar("SHRINK_URL"), api_key=EnvVar("SHRINK_API_KEY"))},
)


def run_config(model_path: str | Path, spec_path: str | Path, output_dir: str | Path, timeout_seconds: float = 4 * 3600) -> RunConfig:
    return RunConfig(ops={
        "submit": SubmitConfig(model_path=str(model_path), spec_path=str(spec_path)),
        "wait": WaitConfig(timeout_seconds=timeout_seconds),
        "download": DownloadConfig(output_dir=str(output_dir)),
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compress a model with Shrink, as a Dagster run.")
    parser.add_argument("model", help="the model file (ONNX, or a Hugging Face folder's archive)")
    parser.add_argument("spec", help="the job spec, a JSON file")
    parser.add_argument("--output", default="compressed", help="the folder the best model is written to")
    args = parser.parse_args(argv)
    result = defs.get_job_def("compress_with_shrink").execute_in_process(
        run_config=run_config(args.model, args.spec, args.output), raise_on_error=False
    )
    if not result.success:
        return 1
    print(result.output_for_node("download"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
