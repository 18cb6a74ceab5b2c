"""The client's commands through ``typer.testing.CliRunner`` on ``shrink_client.cli.app``,
against the real service: compress --wait --output writes the best model; a failing job, a bad
recipe, bad JSON and a missing key end with one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from shrink_client.cli import app
from typer.testing import CliRunner, Result

from bench.stack import ServiceStack
from tests.client.conftest import FAST_BENCH, RECIPE


@pytest.fixture(scope="module")
def env(shared_stack: ServiceStack, api_key: str) -> dict[str, str]:
    return {"SHRINK_URL": shared_stack.base, "SHRINK_API_KEY": api_key}


def shrink(env: dict[str, str], *args: str) -> Result:
    return CliRunner(env=env).invoke(app, list(args))


def _one_error_line(result: Result) -> str:
    assert "Traceback" not in result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ")
    return lines[-1]


def test_compress_wait_output_writes_the_best_model(env: dict[str, str], model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = shrink(env, "compress", str(model_file), "--recipe", json.dumps(RECIPE),
                    "--benchmark", json.dumps(FAST_BENCH), "--wait", "--output", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    written = Path(result.stdout.strip().splitlines()[-1])
    assert written.parent == out and written.is_file()

    job_id = next(w for w in result.stderr.split() if w.startswith("job_"))
    listed = shrink(env, "artifacts", "list", job_id, "--json")
    best = next(a for a in map(json.loads, listed.stdout.splitlines()) if a["best"])
    assert hashlib.sha256(written.read_bytes()).hexdigest() == best["sha256"]

    again = shrink(env, "artifacts", "download", best["id"], "--output", str(tmp_path / "again"))
    assert again.exit_code == 0 and Path(again.stdout.strip()).read_bytes() == written.read_bytes()
    report = shrink(env, "jobs", "report", job_id)
    assert report.exit_code == 0 and json.loads(report.stdout)["best_candidate_id"]
    assert job_id in shrink(env, "jobs", "list").stdout
    assert "succeeded" in shrink(env, "jobs", "watch", job_id).stdout


def test_compress_exits_non_zero_with_one_line_when_the_job_fails(env: dict[str, str], model_file: Path, tmp_path: Path) -> None:
    # A CUDA benchmark on a worker whose onnxruntime has no CUDA provider fails the job.
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps(RECIPE))
    result = shrink(env, "compress", str(model_file), "--recipe", str(recipe_file),
                    "--benchmark", json.dumps({**FAST_BENCH, "device": "cuda"}), "--output", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "failed" in _one_error_line(result) and "device_unavailable" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_bad_recipe_exits_1_with_the_apis_code(env: dict[str, str], model_file: Path) -> None:
    result = shrink(env, "compress", str(model_file), "--recipe", '[{"op": "quantize", "per_chanel": true}]')
    assert result.exit_code == 1
    assert "spec_invalid" in _one_error_line(result)


def test_command_line_mistakes_exit_2(env: dict[str, str], model_file: Path) -> None:
    assert shrink(env, "compress", str(model_file), "--recipe", "[{not json").exit_code == 2
    assert shrink(env, "compress", "missing.onnx").exit_code == 2
    no_key = shrink({"SHRINK_URL": env["SHRINK_URL"], "SHRINK_API_KEY": ""}, "models", "list")
    assert no_key.exit_code == 2 and "SHRINK_API_KEY" in _one_error_line(no_key)


def test_models_list_show_delete_and_unknown_ids(env: dict[str, str], model_file: Path) -> None:
    result = shrink(env, "compress", str(model_file), "--name", "listed", "--recipe", json.dumps(RECIPE),
                    "--benchmark", json.dumps(FAST_BENCH))
    assert result.exit_code == 0, result.stderr
    job_id = result.stdout.strip()
    model_id = next(w for w in result.stderr.split() if w.startswith("mdl_"))
    assert "listed" in shrink(env, "models", "list").stdout
    assert json.loads(shrink(env, "models", "show", model_id).stdout)["id"] == model_id
    assert json.loads(shrink(env, "jobs", "show", job_id).stdout)["model_id"] == model_id

    refused = shrink(env, "models", "delete", model_id)  # a job refers to it
    assert refused.exit_code == 1 and _one_error_line(refused)
    unknown = shrink(env, "jobs", "show", "job_aaaaaaaaaaaaaaaaaaaa")
    assert unknown.exit_code == 1 and "job_not_found" in _one_error_line(unknown)


def test_compress_without_recipe_or_goal_submits_the_services_default_goal(env: dict[str, str], model_file: Path) -> None:
    result = shrink(env, "compress", str(model_file))
    assert result.exit_code == 0, result.stderr
    job_id = result.stdout.strip()
    try:
        spec = json.loads(shrink(env, "jobs", "show", job_id).stdout)["spec"]
        assert spec["recipe"] is None
        assert spec["goal"] == {"metric": None, "max_drop": 0.01, "objective": "latency", "batch_size": None,
                                "budget_minutes": 30.0, "methods": None}
    finally:
        assert shrink(env, "jobs", "cancel", job_id).exit_code == 0
