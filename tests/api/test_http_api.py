"""The HTTP contract over real HTTP (docs/architecture.md, API contract): uploads both ways,
pagination, Idempotency-Key, live events, cancel, benchmarks, capabilities, health, metrics, CORS."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import httpx
import numpy as np
import pytest

from bench import materials
from bench.stack import ServiceStack
from tests.e2e.test_whole_road import FAST_BENCH


@pytest.fixture(scope="module")
def client(shared_stack: ServiceStack) -> httpx.Client:
    return shared_stack.new_tenant()


@pytest.fixture(scope="module")
def cnn(shared_stack: ServiceStack, client: httpx.Client) -> dict:
    response = shared_stack.upload(client, materials.digits_cnn_onnx(), name="cnn")
    assert response.status_code == 201, response.text
    return response.json()


def test_upload_inspects_the_onnx_model(cnn: dict) -> None:
    assert cnn["id"].startswith("mdl_") and cnn["format"] == "onnx" and len(cnn["sha256"]) == 64
    info = cnn["info"]
    assert info["inputs"] == [{"name": "image", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]
    assert info["outputs"][0]["name"] == "logits" and info["opset"] >= 13 and info["params"] > 10_000


def test_multipart_upload_streams_the_file_field(client: httpx.Client) -> None:
    data = materials.digits_cnn_onnx().read_bytes()
    response = client.post("/v1/models", files={"file": ("cnn.onnx", data, "application/octet-stream")}, data={"name": "multi"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "multi" and body["filename"] == "cnn.onnx" and body["size_bytes"] == len(data)


@pytest.mark.parametrize("how", ["raw", "multipart"])
def test_an_upload_of_many_blocks_is_hashed_and_stored_whole(client: httpx.Client, tmp_path, how: str) -> None:
    """The body is written a block at a time on a thread: a file of several blocks and a ragged
    end arrives byte for byte, with the digest of the whole."""
    path = tmp_path / "rows.npz"
    np.savez(path, x=np.random.default_rng(1).standard_normal((3000, 512)).astype(np.float32))  # ~6 MiB
    data = path.read_bytes()
    if how == "raw":
        response = ServiceStack.upload(client, path, kind="datasets")
    else:
        response = client.post("/v1/datasets", files={"file": ("rows.npz", data, "application/octet-stream")})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["size_bytes"] == len(data)
    assert body["info"]["arrays"]["x"]["shape"] == [3000, 512]


def test_hf_checkpoint_archive_is_detected_from_its_content(client: httpx.Client, tmp_path) -> None:
    folder = materials.minilm_hf_copy(tmp_path / "ckpt")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f"minilm/{f.name}")
    response = client.post("/v1/models", params={"filename": "weights.bin"}, content=buf.getvalue(),
                           headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.text
    info = response.json()["info"]
    assert info["format"] == "hf" and info["model_type"] == "bert" and info["has_tokenizer"]
    assert 22_000_000 < info["params"] < 23_000_000


def test_lists_are_paginated_with_a_cursor(shared_stack: ServiceStack) -> None:
    client = shared_stack.new_tenant()
    ids = [shared_stack.upload(client, materials.digits_cnn_onnx(), name=f"m{i}").json()["id"] for i in range(3)]
    first = client.get("/v1/models", params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = client.get("/v1/models", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    seen = [m["id"] for m in first["items"] + second["items"]]
    assert sorted(seen) == sorted(ids) and seen == list(reversed(ids))  # newest first
    assert client.get("/v1/models", params={"name": "m1"}).json()["items"][0]["id"] == ids[1]
    bad = client.get("/v1/models", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"


def test_idempotency_key_returns_the_first_response(client: httpx.Client, cnn: dict) -> None:
    spec = {"model_id": cnn["id"], "recipe": [{"op": "quantize", "method": "dynamic"}], "benchmark": FAST_BENCH}
    first = client.post("/v1/jobs", json=spec, headers={"Idempotency-Key": "abc-123"})
    again = client.post("/v1/jobs", json=spec, headers={"Idempotency-Key": "abc-123"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert [j["id"] for j in client.get("/v1/jobs").json()["items"]].count(first.json()["id"]) == 1
    reused = client.post("/v1/benchmarks", json={"model_id": cnn["id"]}, headers={"Idempotency-Key": "abc-123"})
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "idempotency_key_reused"
    upload = materials.digits_cnn_onnx().read_bytes()
    m1 = client.post("/v1/models", content=upload, headers={"Content-Type": "application/octet-stream", "Idempotency-Key": "up-1"})
    m2 = client.post("/v1/models", content=upload, headers={"Content-Type": "application/octet-stream", "Idempotency-Key": "up-1"})
    assert m1.status_code == m2.status_code == 201 and m1.json()["id"] == m2.json()["id"]


def test_events_stream_state_progress_and_end(shared_stack: ServiceStack, client: httpx.Client, cnn: dict) -> None:
    job = client.post("/v1/jobs", json={"model_id": cnn["id"], "recipe": [{"op": "quantize", "method": "dynamic"}], "benchmark": FAST_BENCH}).json()
    events: list[tuple[str, dict]] = []
    with client.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind:
                events.append((kind, json.loads(line[5:])))
                if kind == "end":
                    break
    states = [e["state"] for k, e in events if k == "state"]
    assert states[0] == "queued" and "running" in states and states[-1] == "succeeded"
    assert any(k == "progress" and e["stage"].startswith("step 1/1") for k, e in events)
    assert events[-1][0] == "end"


def test_cancel_a_running_job(shared_stack: ServiceStack, client: httpx.Client) -> None:
    model = shared_stack.upload(client, materials.digits_cnn_onnx(), name="cnn-slow")
    slow = {"batch_sizes": [1, 2, 4, 8], "min_runs": 5000, "max_runs": 5000, "time_budget_seconds": 600, "target_ci_half_width": 0.0001}
    job = client.post("/v1/jobs", json={"model_id": model.json()["id"], "recipe": [{"op": "quantize", "method": "dynamic"}], "benchmark": slow}).json()
    shared_stack.wait_job(client, job["id"], until=("running",), timeout=120)
    canceled = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["cancel_requested"] is True
    final = shared_stack.wait_job(client, job["id"], timeout=120)
    assert final["state"] == "canceled"
    again = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_not_cancelable"
    report = client.get(f"/v1/jobs/{job['id']}/report")
    assert report.status_code == 409 and report.json()["error"]["code"] == "report_not_ready"


def test_benchmark_a_stored_model_against_another(shared_stack: ServiceStack, client: httpx.Client, cnn: dict) -> None:
    other = shared_stack.upload(client, materials.digits_cnn_onnx(), name="same").json()
    job = client.post("/v1/benchmarks", json={"model_id": cnn["id"], "compare_to_model_id": other["id"], "benchmark": FAST_BENCH})
    assert job.status_code == 202, job.text
    done = shared_stack.wait_job(client, job.json()["id"])
    assert done["state"] == "succeeded", shared_stack.log_tail()
    report = client.get(f"/v1/jobs/{done['id']}/report").json()
    assert report["candidates"][0]["metrics"]["fidelity"]["max_abs_error"] == 0.0
    alone = client.post("/v1/benchmarks", json={"model_id": cnn["id"], "benchmark": FAST_BENCH}).json()
    done = shared_stack.wait_job(client, alone["id"])
    assert done["state"] == "succeeded"
    assert client.get(f"/v1/jobs/{done['id']}/report").json()["baseline"]["latency_ms"]["1"]["p50"] > 0


def test_capabilities_list_passes_with_schemas(client: httpx.Client) -> None:
    caps = client.get("/v1/capabilities").json()
    dynamic = next(p for p in caps["passes"] if p["name"] == "quantize.dynamic")
    assert dynamic["formats"] == ["onnx"] and dynamic["config_schema"]["additionalProperties"] is False
    assert "per_channel" in dynamic["config_schema"]["properties"]
    assert caps["limits"]["max_upload_bytes"] == 8 * 1024**3



def test_capabilities_publish_each_ops_methods_and_default(client: httpx.Client) -> None:
    ops = client.get("/v1/capabilities").json()["ops"]
    assert ops["quantize"]["default"] == "auto" and "dynamic" in ops["quantize"]["methods"]
    assert ops["prune"]["default"] == "structured"

def test_health_readiness_metrics_and_openapi(shared_stack: ServiceStack, client: httpx.Client) -> None:
    assert httpx.get(f"{shared_stack.base}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{shared_stack.base}/readyz").json()
    assert ready["status"] == "ready" and set(ready["checks"]) == {"database", "broker", "storage"}
    metrics = httpx.get(f"{shared_stack.base}/metrics").text
    assert "shrink_http_requests_total" in metrics and 'shrink_jobs{' in metrics
    assert httpx.get(f"{shared_stack.base}/openapi.json").status_code == 401  # the document needs a key
    spec = client.get("/openapi.json").json()
    assert "/v1/jobs/{job_id}/report" in spec["paths"] and "Report" in spec["components"]["schemas"]


def test_error_shape_for_unknown_routes(client: httpx.Client) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
