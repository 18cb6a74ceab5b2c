"""Auth, tenant isolation and bad input over real HTTP: no key is 401; another tenant's model,
dataset, job and artifact are 404; garbage, pickles, exported programs, oversized uploads and
unknown ops are clear 4xx errors that store nothing and leave the API healthy."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench import materials
from bench.stack import ServiceStack
from tests.e2e.test_whole_road import FAST_BENCH

MAX_UPLOAD_BYTES = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def owner(shared_stack: ServiceStack) -> tuple[httpx.Client, dict[str, str]]:
    client = shared_stack.new_tenant()
    model = shared_stack.upload(client, materials.digits_cnn_onnx()).json()
    x = materials.digits()[1][:64]
    buf = io.BytesIO()
    np.savez(buf, image=x, labels=materials.digits()[3][:64])
    dataset = client.post("/v1/datasets", params={"name": "digits"}, content=buf.getvalue(),
                          headers={"Content-Type": "application/octet-stream"}).json()
    job = client.post("/v1/jobs", json={"model_id": model["id"], "dataset_id": dataset["id"],
                                        "recipe": [{"op": "quantize", "method": "dynamic"}], "benchmark": FAST_BENCH}).json()
    job = shared_stack.wait_job(client, job["id"])
    assert job["state"] == "succeeded", shared_stack.log_tail()
    artifact = client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"][0]
    return client, {"model": model["id"], "dataset": dataset["id"], "job": job["id"], "artifact": artifact["id"]}


def _error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code and body["message"]
    return body


def _stored_uploads(stack: ServiceStack) -> list[Path]:
    root = stack.tmp / "var" / "artifacts"
    return sorted(p for p in root.rglob("upload")) if root.exists() else []


def _assert_nothing_left(stack: ServiceStack, client: httpx.Client, before_models: int, before_files: list[Path]) -> None:
    assert len(client.get("/v1/models").json()["items"]) == before_models
    assert _stored_uploads(stack) == before_files
    spool = stack.tmp / "var" / "work" / "uploads"
    assert not spool.exists() or not any(spool.iterdir())
    assert httpx.get(f"{stack.base}/readyz").status_code == 200


def test_every_route_needs_a_valid_key(shared_stack: ServiceStack, owner: tuple[httpx.Client, dict[str, str]]) -> None:
    _, ids = owner
    for path in ("/v1/models", f"/v1/jobs/{ids['job']}", "/v1/capabilities", f"/v1/artifacts/{ids['artifact']}/download"):
        _error(httpx.get(shared_stack.base + path), 401, "missing_api_key")
        _error(httpx.get(shared_stack.base + path, headers={"Authorization": "Bearer shk_nope_nope"}), 401, "invalid_api_key")
        _error(httpx.get(shared_stack.base + path, headers={"Authorization": "Basic abc"}), 401, "invalid_api_key")
    assert httpx.get(shared_stack.base + "/healthz").status_code == 200


def test_another_tenants_objects_are_not_found(shared_stack: ServiceStack, owner: tuple[httpx.Client, dict[str, str]]) -> None:
    client, ids = owner
    other = shared_stack.new_tenant()
    _error(other.get(f"/v1/models/{ids['model']}"), 404, "model_not_found")
    _error(other.delete(f"/v1/models/{ids['model']}"), 404, "model_not_found")
    _error(other.get(f"/v1/datasets/{ids['dataset']}"), 404, "dataset_not_found")
    _error(other.get(f"/v1/jobs/{ids['job']}"), 404, "job_not_found")
    _error(other.get(f"/v1/jobs/{ids['job']}/artifacts"), 404, "job_not_found")
    _error(other.get(f"/v1/jobs/{ids['job']}/report"), 404, "job_not_found")
    _error(other.get(f"/v1/jobs/{ids['job']}/events"), 404, "job_not_found")
    _error(other.post(f"/v1/jobs/{ids['job']}/cancel"), 404, "job_not_found")
    _error(other.get(f"/v1/artifacts/{ids['artifact']}/download"), 404, "artifact_not_found")
    # Another tenant's model in a job spec is as if it did not exist.
    _error(other.post("/v1/jobs", json={"model_id": ids["model"], "recipe": [{"op": "quantize", "method": "dynamic"}]}), 404, "model_not_found")
    assert other.get("/v1/models").json() == {"items": [], "next_cursor": None}
    assert other.get("/v1/jobs").json()["items"] == []
    # The owner still sees everything.
    assert client.get(f"/v1/models/{ids['model']}").status_code == 200
    assert client.get(f"/v1/artifacts/{ids['artifact']}/download").status_code == 200


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"\x13\x37 not a model at all " * 100, 415, "model_format_unsupported"),
        (pickle.dumps({"state_dict": [1, 2, 3]}, protocol=4), 415, "model_format_unsafe"),
    ],
    ids=["garbage", "pickle-pt"],
)
def test_bad_model_bytes_are_refused_and_nothing_is_stored(shared_stack: ServiceStack, owner: tuple[httpx.Client, dict[str, str]], payload: bytes, status: int, code: str) -> None:
    client, _ = owner
    before, files = len(client.get("/v1/models").json()["items"]), _stored_uploads(shared_stack)
    body = _error(client.post("/v1/models", params={"filename": "model.pt"}, content=payload,
                              headers={"Content-Type": "application/octet-stream"}), status, code)
    if code == "model_format_unsafe":
        assert "ONNX" in body["message"] and "torch.onnx.export" in body["message"]
    _assert_nothing_left(shared_stack, client, before, files)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (_zip({"model/archive_format": b"pt2", "model/models/model.json": b"{}", "model/data/weights/w.pt": b"x"}), 415, "model_format_unsafe"),
        (_zip({"archive/data.pkl": pickle.dumps([1]), "archive/version": b"3"}), 415, "model_format_unsafe"),
        (_zip({"archive/code/__torch__/m.py": b"def f(): pass", "archive/data.pkl": b"x"}), 415, "model_format_unsafe"),
        (_zip({"../../etc/evil.onnx": b"x"}), 400, "archive_invalid"),
        (_zip({"config.json": b'{"model_type": "bert", "auto_map": {"AutoModel": "x.Y"}}', "model.safetensors": b"\x08" + b"\x00" * 7 + b"{}"}), 415, "model_format_unsafe"),
    ],
    ids=["pt2-exported-program", "torch-zip-checkpoint", "torchscript", "zip-slip", "hf-remote-code"],
)
def test_unsafe_archives_are_refused(shared_stack: ServiceStack, owner: tuple[httpx.Client, dict[str, str]], payload: bytes, status: int, code: str) -> None:
    client, _ = owner
    before, files = len(client.get("/v1/models").json()["items"]), _stored_uploads(shared_stack)
    _error(client.post("/v1/models", content=payload, headers={"Content-Type": "application/octet-stream"}), status, code)
    _assert_nothing_left(shared_stack, client, before, files)


def test_oversized_upload_is_413_and_nothing_is_stored(shared_stack: ServiceStack, owner: tuple[httpx.Client, dict[str, str]]) -> None:
    client, _ = owner
    before, files = len(client.get("/v1/models").json()["items"]), _stored_uploads(shared_stack)

    def body():  # streamed without a Content-Length: the limit holds while reading
        for _ in range(6):
            yield b"\0" * (1024 * 1024)

    _error(client.post("/v1/models", content=body(), headers={"Content-Type": "application/octet-stream"}), 413, "payload_too_large")
    _error(client.post("/v1/models", content=b"\0" * (7 * 1024 * 1024), headers={"Content-Type": "application/octet-stream"}), 413, "payload_too_large")
    _assert_nothing_left(shared_stack, client, before, files)


def test_bad_specs_are_422_naming_the_field(shared_stack: ServiceStack, owner: tuple[httpx.Client, dict[str, str]]) -> None:
    client, ids = owner
    before = len(client.get("/v1/jobs").json()["items"])
    body = _error(client.post("/v1/jobs", json={"model_id": ids["model"], "recipe": [{"op": "sharpen"}]}), 422, "spec_invalid")
    assert body["detail"]["field"] == "recipe[0].op"
    body = _error(client.post("/v1/jobs", json={"model_id": ids["model"], "recipe": [{"op": "quantize", "method": "dynamic", "per_chanel": True}]}), 422, "spec_invalid")
    assert body["detail"]["field"] == "recipe[0].per_chanel"
    body = _error(client.post("/v1/jobs", json={"model_id": ids["model"], "recipe": [{"op": "quantize", "method": "dynamic", "weight": "int3"}]}), 422, "spec_invalid")
    assert body["detail"]["field"] == "recipe[0].weight"
    body = _error(client.post("/v1/jobs", json={"model_id": ids["model"], "recipe": [{"op": "quantize"}], "colour": "red"}), 422, "validation_error")
    assert body["detail"]["field"] == "colour"
    body = _error(client.post("/v1/jobs", json={"model_id": ids["model"], "recipe": []}), 422, "validation_error")
    assert body["detail"]["field"] == "recipe"
    _error(client.post("/v1/jobs", json={"model_id": ids["model"], "recipe": [{"op": "quantize", "method": "dynamic"}], "benchmark": {"batch_sizes": [0]}}), 422, "spec_invalid")
    _error(client.post("/v1/jobs", json={"model_id": ids["model"], "recipe": [{"op": "quantize", "method": "dynamic"}], "webhook_url": "http://127.0.0.1:9/hook"}), 422, "webhook_url_refused")
    assert len(client.get("/v1/jobs").json()["items"]) == before
    assert httpx.get(f"{shared_stack.base}/readyz").status_code == 200


def test_dataset_that_does_not_match_the_model_is_refused_at_submit(shared_stack: ServiceStack, owner: tuple[httpx.Client, dict[str, str]]) -> None:
    client, ids = owner
    buf = io.BytesIO()
    np.savez(buf, pixels=np.zeros((4, 1, 8, 8), np.float32))
    dataset = client.post("/v1/datasets", content=buf.getvalue(), headers={"Content-Type": "application/octet-stream"}).json()
    body = _error(client.post("/v1/jobs", json={"model_id": ids["model"], "dataset_id": dataset["id"], "recipe": [{"op": "quantize", "method": "dynamic"}]}), 422, "dataset_mismatch")
    assert body["detail"]["missing"] == ["image"] and body["detail"]["unexpected"] == ["pixels"]
    buf = io.BytesIO()
    np.savez(buf, image=np.zeros((4, 1, 9, 9), np.float32))
    dataset = client.post("/v1/datasets", content=buf.getvalue(), headers={"Content-Type": "application/octet-stream"}).json()
    _error(client.post("/v1/jobs", json={"model_id": ids["model"], "dataset_id": dataset["id"], "recipe": [{"op": "quantize", "method": "dynamic"}]}), 422, "dataset_mismatch")
    # A pickled .npz member is refused at upload.
    buf = io.BytesIO()
    np.savez(buf, image=np.array([{"a": 1}], dtype=object))
    _error(client.post("/v1/datasets", content=buf.getvalue(), headers={"Content-Type": "application/octet-stream"}), 422, "dataset_invalid")
