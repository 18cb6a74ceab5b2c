"""examples/prefect_flow.py runs as a Prefect flow run, in an environment of its own (Prefect's
pins and the service's differ: `make install` builds .venv-prefect with Prefect and the client
only), against the service started as processes: the run delivers the best model; a job that
fails fails the run at its wait task and downloads nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from shrink_client import Client

from bench.stack import ServiceStack
from tests.examples.conftest import EXAMPLES, FAILING_SPEC, GOAL_SPEC, ROOT, write_json

PREFECT_PYTHON = ROOT / ".venv-prefect" / "bin" / "python"


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One for the module: Prefect's temporary local server creates its database once."""
    return tmp_path_factory.mktemp("prefect")


def run_flow(stack: ServiceStack, api_key: str, tmp_path: Path, model: Path, spec: dict[str, Any], home: Path) -> subprocess.CompletedProcess[str]:
    assert PREFECT_PYTHON.exists(), "the Prefect example needs its environment: make install builds .venv-prefect"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SHRINK_", "PREFECT_", "PYTHONPATH"))},
        "SHRINK_URL": stack.base, "SHRINK_API_KEY": api_key,
        # No Prefect server configured: the flow run starts Prefect's temporary local one, which
        # keeps its database here; on 2 busy cores it may start slower than Prefect's 20 s default.
        "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    spec_file = write_json(tmp_path / "spec.json", spec)
    return subprocess.run(
        [str(PREFECT_PYTHON), str(EXAMPLES / "prefect_flow.py"), str(model), str(spec_file), "--output", str(tmp_path / "out"),
         "--timeout", "240"],
        env=env, capture_output=True, text=True, timeout=600,
    )


def test_the_flow_run_delivers_the_best_model(
    examples_stack: ServiceStack, api_key: str, model_file: Path, tmp_path: Path, prefect_home: Path
) -> None:
    done = run_flow(examples_stack, api_key, tmp_path, model_file, GOAL_SPEC, prefect_home)
    assert done.returncode == 0, done.stderr[-3000:]
    written = Path(done.stdout.strip().splitlines()[-1])
    assert written.parent == tmp_path / "out" and written.is_file()
    with Client(url=examples_stack.base, api_key=api_key) as client:
        job = next(client.jobs())
        best = next(a for a in job.artifacts() if a.best)
    assert job.state == "succeeded" and job.labels["prefect_flow_run"]
    assert hashlib.sha256(written.read_bytes()).hexdigest() == best.sha256


def test_a_failing_job_fails_the_flow_run_at_its_wait_task(
    examples_stack: ServiceStack, api_key: str, model_file: Path, tmp_path: Path, prefect_home: Path
) -> None:
    done = run_flow(examples_stack, api_key, tmp_path, model_file, FAILING_SPEC, prefect_home)
    assert done.returncode == 1
    assert "JobNotDelivered" in done.stderr and "device_unavailable" in done.stderr
    assert "the flow run did not complete" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec", [{"benchmark": {}}, {"recipe": [], "model": "x"}])
def test_a_spec_file_without_recipe_or_goal_is_refused_before_anything_is_uploaded(
    examples_stack: ServiceStack, api_key: str, model_file: Path, tmp_path: Path, prefect_home: Path, spec: dict[str, Any]
) -> None:
    with Client(url=examples_stack.base, api_key=api_key) as client:
        models_before = len(list(client.models()))
    done = run_flow(examples_stack, api_key, tmp_path, model_file, spec, prefect_home)
    assert done.returncode == 2 and "a job spec is an object with 'recipe' or 'goal'" in done.stderr
    with Client(url=examples_stack.base, api_key=api_key) as client:
        assert len(list(client.models())) == models_before
