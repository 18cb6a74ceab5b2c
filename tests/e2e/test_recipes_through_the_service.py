"""Multi-step recipes through the service with an uploaded dataset: the passes of the engine
issues plug into the whole road (dataset upload, checkpoint folder, artifacts, report)."""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest

from bench import materials
from bench.stack import ServiceStack
from tests.e2e.test_whole_road import FAST_BENCH


@pytest.mark.slow
def test_prune_finetune_quantize_recipe_on_digits(embedded_stack: ServiceStack) -> None:
    client = embedded_stack.new_tenant()
    model = embedded_stack.upload(client, materials.digits_cnn_onnx()).json()
    x_train, x_test, y_train, y_test = materials.digits()
    buf = io.BytesIO()
    np.savez(buf, image=x_train, labels=y_train)
    dataset = client.post("/v1/datasets", params={"name": "digits"}, content=buf.getvalue(),
                          headers={"Content-Type": "application/octet-stream"})
    assert dataset.status_code == 201, dataset.text
    info = dataset.json()["info"]
    assert info["rows"] == len(x_train) and info["has_labels"]

    recipe = [
        {"op": "prune", "method": "structured", "ratio": 0.5, "finetune_epochs": 3},
        {"op": "quantize", "method": "dynamic"},
    ]
    job = client.post("/v1/jobs", json={"model_id": model["id"], "dataset_id": dataset.json()["id"], "recipe": recipe, "benchmark": FAST_BENCH})
    assert job.status_code == 202, job.text
    job = embedded_stack.wait_job(client, job.json()["id"], timeout=600)
    assert job["state"] == "succeeded", f"{job}\n{embedded_stack.log_tail()}"

    report = client.get(f"/v1/jobs/{job['id']}/report").json()
    candidate = report["candidates"][0]
    assert [s["method"] for s in candidate["recipe"]] == ["structured", "dynamic"]
    assert candidate["metrics"]["params"] < 0.6 * report["baseline"]["params"]
    assert "accuracy" in str(candidate["metrics"].get("quality"))

    artifact = next(a for a in client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"] if a["kind"] == "model")
    data = client.get(artifact["links"]["download"]).content
    session = ort.InferenceSession(data)
    logits = session.run(None, {"image": x_test})[0]
    accuracy = float((logits.argmax(1) == y_test).mean())
    original = ort.InferenceSession(str(materials.digits_cnn_onnx())).run(None, {"image": x_test})[0]
    base_accuracy = float((original.argmax(1) == y_test).mean())
    assert accuracy >= base_accuracy - 0.03, (accuracy, base_accuracy)
