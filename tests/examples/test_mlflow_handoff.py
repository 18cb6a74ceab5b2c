"""examples/mlflow_handoff.py against the service started as processes, read back with MLflow's
own API: a job run from a spec file lands in a local SQLite store, a finished job in the local
file store, each with the best candidate's figures, the report and the best model; a job without
a best candidate logs nothing and exits 1."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mlflow import MlflowClient
from shrink_client import Client

from bench.stack import ServiceStack
from tests.examples.conftest import EXAMPLES, GOAL_SPEC, UNMET_SPEC, write_json

SPEC: dict[str, Any] = GOAL_SPEC


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlflow_handoff", EXAMPLES / "mlflow_handoff.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def shrink_env(examples_stack: ServiceStack, api_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.setenv("SHRINK_URL", examples_stack.base)
    monkeypatch.setenv("SHRINK_API_KEY", api_key)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact folder is ./mlruns
    return Client(url=examples_stack.base, api_key=api_key)


def _the_run_holds_the_job(store: str, run_id: str, client: Client, tmp_path: Path) -> None:
    mlflow = MlflowClient(store)
    [experiment] = [e for e in mlflow.search_experiments() if e.name == "shrink"]
    [run] = mlflow.search_runs([experiment.experiment_id])
    assert run.info.run_id == run_id
    job = client.get_job(run.data.tags["shrink.job_id"])
    report = job.report()
    best = next(c for c in report["candidates"] if c["id"] == report["best_candidate_id"])
    assert run.data.tags["shrink.candidate_id"] == best["id"] and run.data.tags["shrink.model_id"] == job.model_id
    assert json.loads(run.data.params["recipe"]) == best["recipe"]
    metrics = run.data.metrics
    assert metrics["speedup_b8"] == pytest.approx(best["ratios"]["speedup"]["8"]["value"])
    assert metrics["speedup_b8_ci95_low"] <= metrics["speedup_b8"] <= metrics["speedup_b8_ci95_high"]
    assert metrics["size_ratio"] == pytest.approx(best["ratios"]["size"])
    assert metrics["fidelity_cosine_mean"] == pytest.approx(best["metrics"]["fidelity"]["cosine_mean"])

    [artifact] = [a for a in job.artifacts() if a.best]
    [logged] = mlflow.list_artifacts(run_id, "model")
    assert logged.path == f"model/{artifact.filename}"
    local = Path(mlflow.download_artifacts(run_id, logged.path, str(tmp_path / "back")))
    assert hashlib.sha256(local.read_bytes()).hexdigest() == artifact.sha256
    logged_report = Path(mlflow.download_artifacts(run_id, "shrink/report.json", str(tmp_path / "back")))
    assert json.loads(logged_report.read_text())["best_candidate_id"] == best["id"]


def test_a_job_run_from_a_spec_file_lands_in_a_sqlite_store(
    example: ModuleType, shrink_env: Client, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path}/mlflow.db"
    spec_file = write_json(tmp_path / "spec.json", SPEC)
    assert example.main(["--model", str(model_file), "--spec", str(spec_file), "--tracking-uri", store]) == 0
    _the_run_holds_the_job(store, capsys.readouterr().out.strip(), shrink_env, tmp_path)


def test_a_finished_job_lands_in_the_local_file_store(
    example: ModuleType, shrink_env: Client, model_file: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # MLflow 3 keeps the file store in maintenance and refuses it unless asked.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    job = shrink_env.submit(shrink_env.upload_model(model_file), **SPEC).wait(progress=False)
    store = f"file://{tmp_path}/mlruns"
    assert example.main(["--job", job.id, "--tracking-uri", store]) == 0
    _the_run_holds_the_job(store, capsys.readouterr().out.strip(), shrink_env, tmp_path)


def test_a_job_without_a_best_candidate_logs_nothing_and_exits_1(
    example: ModuleType, shrink_env: Client, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path}/mlflow.db"
    spec_file = write_json(tmp_path / "spec.json", UNMET_SPEC)
    assert example.main(["--model", str(model_file), "--spec", str(spec_file), "--tracking-uri", store]) == 1
    assert "has no best candidate" in capsys.readouterr().err
    assert not MlflowClient(store).search_runs([e.experiment_id for e in MlflowClient(store).search_experiments()])
