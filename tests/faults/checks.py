"""What every fault test asserts at the end, and the small steps they share: submit a job, see its
engine at work, and count each job's artifacts both through the API and in the bucket."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.stack import ServiceStack
from tests.client.conftest import FAST_BENCH, RECIPE

TERMINAL = ("succeeded", "failed", "canceled")
# A job of several seconds (the benchmark times each model for its whole budget: the interval it
# asks for is never reached), for faults that must meet a job at work; FAST_BENCH takes about one.
SLOW_BENCH = {**FAST_BENCH, "time_budget_seconds": 3, "max_runs": 100_000, "target_ci_half_width": 0.0001}


# Fast enough to see the reaper act within a test: a lost wake-up is sent again after 3 s (the
# production default is 600 s; docs/operations.md, "What each fault does to a job").
FAST_LIFECYCLE = {"SHRINK_REQUEUE_QUEUED_AFTER_SECONDS": "3"}


def production_env(tmp: Path, *, database_url: str, broker_url: str, s3_endpoint: str, **extra: str) -> dict[str, str]:
    return {
        "SHRINK_ENV": "test",
        "SHRINK_DATA_DIR": str(tmp / "var"),
        "SHRINK_DATABASE_URL": database_url,
        "SHRINK_BROKER_URL": broker_url,
        "SHRINK_STORAGE_BACKEND": "s3",
        "SHRINK_S3_ENDPOINT_URL": s3_endpoint,
        "SHRINK_S3_BUCKET": f"shrink-{uuid.uuid4().hex[:8]}",
        "SHRINK_S3_ACCESS_KEY_ID": "testing",
        "SHRINK_S3_SECRET_ACCESS_KEY": "testing",
        **FAST_LIFECYCLE,
        **extra,
    }


def upload_model(stack: ServiceStack, client: httpx.Client, path: Path) -> str:
    response = stack.upload(client, path)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def submit(client: httpx.Client, model_id: str, *, benchmark: dict[str, Any] | None = None) -> str:
    response = client.post("/v1/jobs", json={"model_id": model_id, "recipe": RECIPE, "benchmark": benchmark or FAST_BENCH})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def engine_running(job_id: str) -> bool:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "engine.cli" in cmdline and job_id in cmdline:
            return True
    return False


def wait_engine(stack: ServiceStack, client: httpx.Client, job_id: str, timeout: float = 90) -> None:
    """Until the job's engine is at work in the sandbox: the job is mid-run, past its inputs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine_running(job_id):
            return
        time.sleep(0.05)
    raise AssertionError(f"the engine of {job_id} never started: {client.get(f'/v1/jobs/{job_id}').json()}\n{stack.log_tail()}")


def stored_files(s3: Any, bucket: str, job_id: str) -> list[str]:
    """The job's objects in the bucket (read from the store itself, not through the service)."""
    names = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="tenants/"):
        names += [o["Key"].rsplit("/", 1)[-1] for o in page.get("Contents", []) if f"/jobs/{job_id}/" in o["Key"]]
    return sorted(names)


def assert_one_artifact_set(client: httpx.Client, s3: Any, bucket: str, job: dict[str, Any]) -> None:
    """A succeeded job lists exactly one model, report and manifest, and the bucket holds exactly
    the objects those records name (keys are per job and file, so a second set could only hide as
    extra records or extra objects)."""
    items = client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]
    kinds = Counter(a["kind"] for a in items)
    assert kinds == Counter({"manifest": 1, "model": 1, "report": 1}), (job, items)
    assert stored_files(s3, bucket, job["id"]) == sorted(a["filename"] for a in items)
    assert client.get(f"/v1/jobs/{job['id']}/report").status_code == 200


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def logged(stack: ServiceStack, event: str) -> list[dict[str, Any]]:
    """The records of one event (``job.requeued``) that the stack's processes logged, restarts
    included (each process writes JSON lines to a file of its own)."""
    found = []
    for path in sorted(stack.logs.iterdir()):
        for line in path.read_text(errors="replace").splitlines():
            if event in line and line.startswith("{"):
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("event") == event:
                        found.append(record)
    return found


def job_states(client: httpx.Client, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The jobs as the API reads them now; a job the API cannot read at the moment (it restarts,
    or its database does) is left out."""
    found = {}
    for job_id in job_ids:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = client.get(f"/v1/jobs/{job_id}", timeout=10)
            if response.status_code == 200:
                found[job_id] = response.json()
    return found


def wait_terminal(stack: ServiceStack, client: httpx.Client, job_ids: list[str], timeout: float = 180) -> dict[str, dict[str, Any]]:
    """Until every job has ended, reading through faults; fails naming the jobs still open."""
    deadline = time.monotonic() + timeout
    jobs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        jobs.update(job_states(client, [j for j in job_ids if jobs.get(j, {}).get("state") not in TERMINAL]))
        if all(jobs.get(j, {}).get("state") in TERMINAL for j in job_ids):
            return jobs
        time.sleep(0.5)
    open_jobs = {j: jobs.get(j, {}).get("state") for j in job_ids if jobs.get(j, {}).get("state") not in TERMINAL}
    raise AssertionError(f"jobs not terminal after {timeout} s: {open_jobs}\n{stack.log_tail()}")
