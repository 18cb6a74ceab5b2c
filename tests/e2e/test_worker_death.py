"""A job survives its worker dying: SIGKILL the worker mid-job, start another, and the job ends
succeeded with exactly one set of artifacts (docs/architecture.md, job lifecycle: leases + reaper)."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from bench import materials
from bench.stack import ServiceStack
from tests.e2e.test_whole_road import FAST_BENCH


def _engine_processes(job_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "engine.cli" in cmdline and job_id in cmdline:
            found.append(proc)
    return found


@pytest.mark.slow
def test_job_survives_sigkill_of_its_worker(embedded_stack: ServiceStack, tmp_path: Path) -> None:
    client = embedded_stack.new_tenant()
    model = embedded_stack.upload(client, materials.minilm_onnx()).json()
    job_id = client.post(
        "/v1/jobs", json={"model_id": model["id"], "recipe": [{"op": "quantize", "method": "dynamic"}], "benchmark": FAST_BENCH}
    ).json()["id"]

    # Wait until the engine is really working on it in the sandbox, then kill the whole worker.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _engine_processes(job_id):
        time.sleep(0.2)
    assert _engine_processes(job_id), embedded_stack.log_tail()
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "running"
    embedded_stack.kill_worker(embedded_stack.workers[0])

    # The sandboxed engine dies with its worker (parent-death signal), leaving nothing running.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _engine_processes(job_id):
        time.sleep(0.2)
    assert not _engine_processes(job_id)

    embedded_stack.start_worker()
    job = embedded_stack.wait_job(client, job_id, timeout=300)
    assert job["state"] == "succeeded", f"{job}\n{embedded_stack.log_tail()}"
    assert job["attempts"] == 2

    artifacts = client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]
    assert sorted(a["kind"] for a in artifacts) == ["manifest", "model", "report"]
    stored = sorted(p.name for p in (tmp_path / "var" / "artifacts").rglob("*") if p.is_file() and job_id in str(p))
    assert stored == ["manifest.json", "model.onnx", "report.json"]
    events = [line for line in client.get(f"/v1/jobs/{job_id}/events").text.splitlines() if line.startswith("data:")]
    assert any('"lease_expired"' in line for line in events)
