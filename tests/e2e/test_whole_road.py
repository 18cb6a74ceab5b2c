"""The whole road over real HTTP: upload, submit, poll, download, load the artifact in
onnxruntime and compare it with the original; on the embedded default and on
PostgreSQL + Redis + S3 (moto over HTTP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from bench import materials
from bench.stack import ServiceStack
from engine.formats import onnx_model

FAST_BENCH = {"batch_sizes": [1], "warmup_runs": 2, "min_runs": 5, "max_runs": 30, "time_budget_seconds": 2, "fidelity_rows": 8}


def _feeds(path: Path, batch: int = 4) -> dict[str, np.ndarray]:
    """Inputs from the model's signature, the way the engine makes them without a dataset."""
    inputs, _ = onnx_model.signature(onnx_model.load_proto(path, with_data=False))
    return onnx_model.sample_feeds(inputs, batch=batch, seq_len=16, rng=np.random.default_rng(1))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def travel(stack: ServiceStack, model_path: Path, tmp_path: Path) -> float:
    client = stack.new_tenant()
    uploaded = stack.upload(client, model_path, name=model_path.parent.name)
    assert uploaded.status_code == 201, uploaded.text
    model = uploaded.json()
    assert model["id"].startswith("mdl_") and model["format"] == "onnx" and model["info"]["params"] > 0

    submitted = client.post("/v1/jobs", json={"model_id": model["id"], "recipe": [{"op": "quantize", "method": "dynamic"}], "benchmark": FAST_BENCH})
    assert submitted.status_code == 202, submitted.text
    job = stack.wait_job(client, submitted.json()["id"])
    assert job["state"] == "succeeded", f"{job}\n{stack.log_tail()}"
    assert job["progress"]["fraction"] == 1.0

    artifacts = client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]
    kinds = sorted(a["kind"] for a in artifacts)
    assert kinds == ["manifest", "model", "report"]
    model_artifact = next(a for a in artifacts if a["kind"] == "model")
    download = client.get(model_artifact["links"]["download"], follow_redirects=True)
    assert download.status_code == 200
    assert len(download.content) == model_artifact["size_bytes"]
    out = tmp_path / "downloaded.onnx"
    out.write_bytes(download.content)

    report = client.get(f"/v1/jobs/{job['id']}/report").json()
    assert report["baseline"]["latency_ms"]["1"]["p50"] > 0
    candidate = report["candidates"][0]
    assert candidate["metrics"]["size_bytes"] == model_artifact["size_bytes"]
    assert candidate["metrics"]["fidelity"]["cosine_mean"] > 0.9

    original = ort.InferenceSession(str(model_path))
    compressed = ort.InferenceSession(str(out))
    feeds = _feeds(model_path)
    return _cosine(original.run(None, feeds)[0], compressed.run(None, feeds)[0])


@pytest.mark.slow
def test_minilm_and_cnn_travel_the_embedded_default(embedded_stack: ServiceStack, tmp_path: Path) -> None:
    assert travel(embedded_stack, materials.minilm_onnx(), tmp_path) > 0.95
    assert travel(embedded_stack, materials.digits_cnn_onnx(), tmp_path) > 0.98


@pytest.mark.slow
def test_minilm_and_cnn_travel_postgres_redis_s3(production_stack: ServiceStack, tmp_path: Path) -> None:
    assert travel(production_stack, materials.minilm_onnx(), tmp_path) > 0.95
    assert travel(production_stack, materials.digits_cnn_onnx(), tmp_path) > 0.98
