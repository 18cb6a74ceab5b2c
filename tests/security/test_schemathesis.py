"""Schemathesis over the service as processes (the embedded default, with a worker): every
operation of the OpenAPI document, with a tenant's key, under all of Schemathesis's checks (no
server error, responses and status codes as documented, content types, Allow headers, valid data
accepted and invalid data refused...), examples, coverage, fuzzing and the stateful phase, with a
fixed seed and a bounded number of examples. The two uploads take raw bodies that Schemathesis
cannot make valid; the upload tests (tests/api, tests/security/test_hostile_uploads.py) cover them.

Below it, one regression test per thing Schemathesis found, each over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.stack import ServiceStack
from tests.api.test_openapi import recipe_array
from tests.client.conftest import FAST_BENCH, RECIPE, tiny_onnx

SEED = 20261130
MAX_EXAMPLES = 60
# Each entry narrows one check on one operation, with the reason it cannot hold there.
CONFIG = """
# Real records for some of the ids it sends, so that requests reach past the 404s.
parameters."body.model_id" = { dictionary = "models", probability = 0.5 }
parameters."body.compare_to_model_id" = { dictionary = "models", probability = 0.5 }
parameters."body.dataset_id" = { dictionary = "datasets", probability = 0.5 }
parameters."path.record_id" = { dictionary = "records", probability = 0.5 }
parameters."path.job_id" = { dictionary = "jobs", probability = 0.5 }
parameters."path.artifact_id" = { dictionary = "artifacts", probability = 0.5 }

[[operations]]
# The uploads: raw bodies Schemathesis cannot make valid (covered by the upload tests).
include-name = ["POST /v1/models", "POST /v1/datasets"]
enabled = false

[[operations]]
# A cursor is opaque (next_cursor as the previous page gave it): no schema describes the
# strings the server made, so a well-formed one it did not make is 400 invalid_cursor.
include-name = ["GET /v1/jobs", "GET /v1/models", "GET /v1/datasets"]
checks.positive_data_acceptance.expected-statuses = ["2XX", "3XX", "400", "401", "404", "429"]

[[operations]]
# Last-Event-ID is the id of an event the stream sent: an integer below 2^63 that a header's
# string schema cannot bound, so another string is 400 invalid_last_event_id.
include-name = "GET /v1/jobs/{job_id}/events"
checks.positive_data_acceptance.expected-statuses = ["2XX", "3XX", "400", "401", "404", "429"]

[[operations]]
# A goal the schema admits may still ask what the inputs cannot give (a label metric without a
# labelled dataset, methods that do not apply to the model): 422 naming the field.
include-name = "POST /v1/jobs"
checks.positive_data_acceptance.expected-statuses = ["2XX", "3XX", "401", "404", "409", "422", "429"]
"""
SEEDED = """
[dictionaries.models]
values = {models}
[dictionaries.datasets]
values = {datasets}
[dictionaries.records]
values = {records}
[dictionaries.jobs]
values = {jobs}
[dictionaries.artifacts]
values = {artifacts}
"""

@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    with ServiceStack({"SHRINK_ENV": "test", "SHRINK_DATA_DIR": str(tmp / "var")}, tmp) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: ServiceStack) -> Iterator[httpx.Client]:
    with stack.new_tenant() as tenant_client:
        yield tenant_client


@pytest.fixture(scope="module")
def seeded(stack: ServiceStack, client: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """A model, a dataset and a finished job with its artifacts, for the ids Schemathesis sends."""
    tmp_path = tmp_path_factory.mktemp("seed")
    model_file = tiny_onnx(tmp_path / "tiny.onnx")
    model = stack.upload(client, model_file)
    assert model.status_code == 201, model.text
    rows = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
    np.savez(tmp_path / "rows.npz", x=rows)
    dataset = stack.upload(client, tmp_path / "rows.npz", kind="datasets")
    assert dataset.status_code == 201, dataset.text
    submitted = client.post("/v1/jobs", json={"model_id": model.json()["id"], "recipe": RECIPE, "benchmark": FAST_BENCH})
    assert submitted.status_code == 202, submitted.text
    job = stack.wait_job(client, submitted.json()["id"])
    assert job["state"] == "succeeded", job
    artifacts = [a["id"] for a in client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]]
    models, datasets = [model.json()["id"]], [dataset.json()["id"]]
    return {"models": models, "datasets": datasets, "records": models + datasets, "jobs": [job["id"]], "artifacts": artifacts}


def test_a_405_allows_every_method_of_the_path(client: httpx.Client) -> None:
    # GET and DELETE /v1/jobs/{id} are two routes: Starlette named only the first one.
    for path, allowed in (("/v1/jobs/job_x", "DELETE, GET"), ("/v1/jobs", "GET, POST"), ("/v1/models/mdl_x", "DELETE, GET")):
        response = client.request("OPTIONS", path)
        assert response.status_code == 405
        assert response.headers["Allow"] == allowed
        assert response.json()["error"]["code"] == "method_not_allowed"


def test_the_document_declares_what_the_api_answers(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    download = document["paths"]["/v1/artifacts/{artifact_id}/download"]["get"]
    assert "401" in download["responses"]
    assert client.get("/v1/artifacts/art_x/download", headers={"Authorization": ""}).status_code == 401

    # A recipe has at least one step; a spec with a recipe and a goal is refused naming the goal.
    job_spec = schemas["JobSpec"]
    assert recipe_array(job_spec)["minItems"] == 1
    refused = client.post("/v1/jobs", json={"model_id": "mdl_x", "recipe": [{"op": "quantize"}], "goal": {}})
    assert refused.status_code == 422 and refused.json()["error"]["detail"]["field"] == "goal"

    # Benchmark settings are the schema the API checks them against: unknown ones are refused.
    for spec in ("JobSpec", "BenchmarkSpec"):
        assert schemas[spec]["properties"]["benchmark"]["$ref"] == "#/components/schemas/BenchmarkSettings"
    assert schemas["BenchmarkSettings"]["additionalProperties"] is False
    assert "batch_sizes" in schemas["BenchmarkSettings"]["properties"]
    refused = client.post("/v1/benchmarks", json={"model_id": "mdl_x", "benchmark": {"bogus": 1}})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "spec_invalid"


def test_a_report_recipe_is_documented_as_it_ran(client: httpx.Client, seeded: dict[str, list[str]]) -> None:
    # Its steps carry their defaults and what they resolved, which a submitted step may not:
    # only request bodies take the typed RecipeStep.
    report = client.get(f"/v1/jobs/{seeded['jobs'][0]}/report").json()
    assert "resolved" in report["candidates"][0]["recipe"][0]
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["CandidateReport"]["properties"]["recipe"]["items"] != {"$ref": "#/components/schemas/RecipeStep"}
    assert recipe_array(schemas["JobSpec"])["items"] == {"$ref": "#/components/schemas/RecipeStep"}


# Last: it deletes the seeded records, which the tests above read.
def test_schemathesis_finds_no_failure(stack: ServiceStack, client: httpx.Client, seeded: dict[str, list[str]], tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG + SEEDED.format(**{name: json.dumps(ids) for name, ids in seeded.items()}))
    reports = tmp_path / "report"
    # Not inherited: Schemathesis's hooks and plugins must not see this pytest's environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "SCHEMATHESIS"))}
    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{stack.base}/openapi.json",
            "--header", f"Authorization: {client.headers['Authorization']}",
            "--checks", "all",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--max-examples", str(MAX_EXAMPLES),
            "--seed", str(SEED),
            "--workers", "1",
            "--request-timeout", "30",
            "--report", "junit,ndjson", "--report-dir", str(reports),
            "--no-color",
        ],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache stays out of the repository
    )
    assert run.returncode == 0, f"{run.stdout[-20000:]}\n{run.stderr[-4000:]}\nreports in {reports}\n{stack.log_tail()}"
