"""examples/dagster_job.py runs as a Dagster run against the service started as processes: its
command line (resources from SHRINK_URL / SHRINK_API_KEY) delivers the best model; a job that
fails fails the run at the wait op and downloads nothing."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from shrink_client import Client

from bench.stack import ServiceStack
from tests.examples.conftest import EXAMPLES, FAILING_SPEC, GOAL_SPEC, write_json

SPEC: dict[str, Any] = GOAL_SPEC


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dagster_job", EXAMPLES / "dagster_job.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_command_line_run_delivers_the_best_model(
    example: ModuleType, examples_stack: ServiceStack, api_key: str, model_file: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SHRINK_URL", examples_stack.base)
    monkeypatch.setenv("SHRINK_API_KEY", api_key)
    spec_file = write_json(tmp_path / "spec.json", SPEC)
    assert example.main([str(model_file), str(spec_file), "--output", str(tmp_path / "out")]) == 0

    written = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert written.parent == tmp_path / "out" and written.is_file()
    with Client(url=examples_stack.base, api_key=api_key) as client:
        job = next(client.jobs())
        best = next(a for a in job.artifacts() if a.best)
    assert job.state == "succeeded" and job.labels["dagster_run"]
    assert hashlib.sha256(written.read_bytes()).hexdigest() == best.sha256


def test_a_failing_job_fails_the_run_at_the_wait_op(
    example: ModuleType, examples_stack: ServiceStack, api_key: str, model_file: Path, tmp_path: Path
) -> None:
    spec_file = write_json(tmp_path / "spec.json", FAILING_SPEC)
    result = example.compress_with_shrink.execute_in_process(
        run_config=example.run_config(model_file, spec_file, tmp_path / "out", timeout_seconds=120),
        resources={"shrink": example.Shrink(url=examples_stack.base, api_key=api_key)},
        raise_on_error=False,
    )
    assert not result.success
    [failed] = [e for e in result.all_events if e.is_step_failure]
    assert failed.step_key == "wait"
    assert "device_unavailable" in failed.event_specific_data.error.message
    assert "download" not in {e.step_key for e in result.all_events if e.is_step_success}
    assert not (tmp_path / "out").exists()


def test_a_spec_file_without_recipe_or_goal_is_refused_before_anything_is_uploaded(example: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'recipe' or 'goal'"):
        example.load_spec(write_json(tmp_path / "spec.json", {"benchmark": {}}))
