"""Goal jobs through the service, as processes (docs/architecture.md, goal-driven search): a goal
met on a small CNN, a goal no candidate can meet, a worker SIGKILLed mid-search, the budget, and
cancel. Each search is budgeted in seconds; the figures a longer budget reaches are in
bench/search.py."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bench import materials
from bench.stack import ServiceStack
from tests.e2e.test_worker_death import _engine_processes

BENCH = {"batch_sizes": [64], "warmup_runs": 2, "min_runs": 5, "max_runs": 60, "time_budget_seconds": 2, "fidelity_rows": 256,
         "measure_memory": False}
# Grace past the budget: the final benchmark's own share is inside the budget; this covers
# the sandbox's start, the model's export and the artifacts' upload on a loaded CI machine.
GRACE_SECONDS = 45
# Rows of the goals that must be met: with 600 (120 held out, one row 0.0083 of accuracy) the
# search's fastest candidates within 0.02 on the selection rows were all vetoed by the held-out
# rows in about one run of three (AMD EPYC, AVX2); 1,200 put 240 rows in each judging part.
MET_ROWS = 1200


def digits_dataset(tmp_path: Path, rows: int = 600) -> Path:
    x_train, x_test, y_train, y_test = materials.digits()
    x, y = np.concatenate([x_train, x_test])[:rows], np.concatenate([y_train, y_test])[:rows]
    path = tmp_path / "digits.npz"
    np.savez(path, image=x, labels=y)
    return path


def submit_goal(stack: ServiceStack, client: httpx.Client, tmp_path: Path, goal: dict[str, Any], rows: int = 600) -> str:
    model = stack.upload(client, materials.digits_cnn_onnx()).json()
    dataset = stack.upload(client, digits_dataset(tmp_path, rows), kind="datasets", name="digits").json()
    response = client.post("/v1/jobs", json={"model_id": model["id"], "dataset_id": dataset["id"], "goal": goal, "benchmark": BENCH})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def evaluated(client: httpx.Client, job_id: str) -> int:
    found = re.match(r"(\d+) candidates evaluated", client.get(f"/v1/jobs/{job_id}").json()["progress"]["message"])
    return int(found.group(1)) if found else 0


def wait_for_candidates(stack: ServiceStack, client: httpx.Client, job_id: str, count: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline and seen < count:
        seen = max(seen, evaluated(client, job_id))
        time.sleep(0.3)
    assert seen >= count, stack.log_tail()


def seconds_running(job: dict[str, Any]) -> float:
    return (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()


def check_goal_met(stack: ServiceStack, client: httpx.Client, job_id: str, max_drop: float) -> dict[str, Any]:
    job = stack.wait_job(client, job_id, timeout=300)
    assert job["state"] == "succeeded", f"{job}\n{stack.log_tail()}"
    assert job["result"]["goal_met"] is True, job["result"]
    best = job["result"]["best_candidate_id"]
    report = client.get(f"/v1/jobs/{job_id}/report").json()
    search = report["search"]
    assert len(search["candidates"]) >= 2 and best in search["pareto_front"]
    entry = next(c for c in report["candidates"] if c["id"] == best)
    # Faster than the original at the goal's batch size, and within the bound on held-out rows.
    assert entry["ratios"]["speedup"]["64"]["verdict"] != "slower" and entry["ratios"]["speedup"]["64"]["value"] > 1.0
    assert entry["held_out"]["drop"] <= max_drop and not entry["flags"]
    assert search["rows"]["held_out"]["rows"] > 0
    artifacts = client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]
    models = [a for a in artifacts if a["kind"] == "model"]
    assert [a["candidate_id"] for a in models if a["best"]] == [best]
    assert {a["candidate_id"] for a in models} <= set(search["final"])
    return job


@pytest.mark.slow
def test_a_goal_job_finds_a_faster_model_within_the_bound_on_the_embedded_default(embedded_stack: ServiceStack, tmp_path: Path) -> None:
    client = embedded_stack.new_tenant()
    goal = {"metric": "accuracy", "max_drop": 0.02, "batch_size": 64, "budget_minutes": 1, "methods": ["quantize", "prune"]}
    job_id = submit_goal(embedded_stack, client, tmp_path, goal, rows=MET_ROWS)
    job = check_goal_met(embedded_stack, client, job_id, 0.02)
    # The budget is respected: the job ends within its grace.
    assert seconds_running(job) <= 60 + GRACE_SECONDS, seconds_running(job)
    events = client.get(f"/v1/jobs/{job_id}/events").text
    assert events.count("event: candidate") == len(job["result"]["candidates"])


@pytest.mark.slow
def test_a_goal_job_on_postgresql_redis_and_s3(production_stack: ServiceStack, tmp_path: Path) -> None:
    client = production_stack.new_tenant()
    goal = {"max_drop": 0.02, "batch_size": 64, "budget_minutes": 1, "methods": ["quantize", "prune"]}
    job_id = submit_goal(production_stack, client, tmp_path, goal, rows=MET_ROWS)
    check_goal_met(production_stack, client, job_id, 0.02)


def test_an_impossible_bound_ends_with_no_best_and_says_what_it_would_take(embedded_stack: ServiceStack, tmp_path: Path) -> None:
    client = embedded_stack.new_tenant()
    # Removing channels never reproduces the outputs exactly: cosine 1.0 cannot be met. (With
    # quantization allowed it can: when no int8 variant keeps quality, the default delivers the
    # original with onnxruntime's offline optimizations.)
    job_id = submit_goal(embedded_stack, client, tmp_path, {"metric": "cosine", "max_drop": 0.0, "batch_size": 64,
                                                            "budget_minutes": 0.5, "methods": ["prune"]})
    job = embedded_stack.wait_job(client, job_id, timeout=300)
    assert job["state"] == "succeeded", f"{job}\n{embedded_stack.log_tail()}"
    assert job["result"]["best_candidate_id"] is None and job["result"]["goal_met"] is False
    assert "closest" in job["result"]["message"] and "max_drop" in job["result"]["message"]
    artifacts = client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]
    assert not any(a["best"] for a in artifacts)


@pytest.mark.slow
def test_a_search_resumes_after_its_worker_is_killed(embedded_stack: ServiceStack, tmp_path: Path) -> None:
    client = embedded_stack.new_tenant()
    goal = {"max_drop": 0.02, "batch_size": 64, "budget_minutes": 1.5, "methods": ["quantize", "prune"]}
    job_id = submit_goal(embedded_stack, client, tmp_path, goal)
    wait_for_candidates(embedded_stack, client, job_id, 2)
    embedded_stack.kill_worker(embedded_stack.workers[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _engine_processes(job_id):
        time.sleep(0.2)
    found_before = evaluated(client, job_id)
    embedded_stack.start_worker()

    job = embedded_stack.wait_job(client, job_id, timeout=400)
    assert job["state"] == "succeeded" and job["attempts"] == 2, f"{job}\n{embedded_stack.log_tail()}"
    events = client.get(f"/v1/jobs/{job_id}/events").text
    resumed = re.search(r'"event": "job.search.resumed", "candidates": (\d+)', events)
    assert resumed and int(resumed.group(1)) >= found_before >= 2, events[-3000:]
    # The candidates of the first attempt are kept, numbered on: nothing evaluated twice.
    ids = job["result"]["candidates"]
    assert len(ids) == len(set(ids)) and f"cand_{job_id.removeprefix('job_')}_1" in ids
    artifacts = client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]
    assert [a["kind"] for a in artifacts].count("report") == 1 and sum(a["best"] for a in artifacts) == 1
    stored = [p.name for p in (tmp_path / "var" / "artifacts").rglob("*") if p.is_file() and job_id in str(p)]
    assert sorted(stored) == sorted(a["filename"] for a in artifacts)


@pytest.mark.slow
def test_cancel_keeps_the_candidates_found(embedded_stack: ServiceStack, tmp_path: Path) -> None:
    client = embedded_stack.new_tenant()
    job_id = submit_goal(embedded_stack, client, tmp_path, {"batch_size": 64, "budget_minutes": 5, "methods": ["quantize", "prune"]})
    wait_for_candidates(embedded_stack, client, job_id, 1)
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    job = embedded_stack.wait_job(client, job_id, timeout=120)
    assert job["state"] == "canceled", job
    assert job["result"]["best_candidate_id"] is None and len(job["result"]["candidates"]) >= 1
