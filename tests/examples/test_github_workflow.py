"""examples/github-actions/compress-on-release.yml, run as a runner would (tests/examples/actions.py)
against the service started as processes: a release installs the client, compresses and keeps
the best model as the run's artifact; a job that fails, or whose candidates all miss the bound,
fails the step and keeps nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from shrink_client import Client

from bench.stack import ServiceStack
from core import capabilities
from core.jobs.schemas import GoalSpec
from tests.examples.actions import Runner
from tests.examples.conftest import (
    EXAMPLES,
    FAILING_SPEC,
    GOAL_SPEC,
    ROOT,
    UNMET_SPEC,
    write_json,
)

WORKFLOW = EXAMPLES / "github-actions" / "compress-on-release.yml"
# The workflow sends its spec file with --goal; for a recipe spec (the failing cases) the test
# hands the file to --recipe instead.
SPEC: dict[str, Any] = GOAL_SPEC


def _runner(workspace: Path, stack: ServiceStack, api_key: str, model_file: Path, spec: dict[str, Any]) -> Runner:
    workflow = Runner.load(WORKFLOW)
    env = workflow["env"]
    workspace.mkdir()
    (workspace / env["MODEL_PATH"]).write_bytes(model_file.read_bytes())
    write_json(workspace / env["SHRINK_GOAL"], spec["goal"] if "goal" in spec else spec["recipe"])
    write_json(workspace / env["SHRINK_BENCHMARK"], spec["benchmark"])
    contexts = {
        "secrets": {"SHRINK_URL": stack.base, "SHRINK_API_KEY": api_key},
        "github": {"ref_name": "v1.2.0", "event": {"repository": {"name": "classifier"}, "release": {"tag_name": "v1.2.0"}}},
    }
    return Runner(workflow, workspace, ROOT, contexts)


def _run(runner: Runner, spec: dict[str, Any]) -> list[Any]:
    return runner.run("compress", replace={} if "goal" in spec else {"--goal ": "--recipe "})


def test_the_workflow_runs_on_release_and_keeps_the_best_model(
    examples_stack: ServiceStack, api_key: str, model_file: Path, tmp_path: Path
) -> None:
    runner = _runner(tmp_path / "workspace", examples_stack, api_key, model_file, SPEC)
    assert runner.workflow["on"]["release"]["types"] == ["published"]
    compress = next(s for s in runner.workflow["jobs"]["compress"]["steps"] if s.get("name") == "Compress")
    assert "--goal " in compress["run"] and "--wait --output" in compress["run"]
    assert compress["env"]["SHRINK_API_KEY"] == "${{ secrets.SHRINK_API_KEY }}"

    results = _run(runner, SPEC)
    assert [r.returncode for r in results] == [0] * len(runner.workflow["jobs"]["compress"]["steps"]), results[-1]
    install = next(r for r in results if r.name == "Install the Shrink client")
    assert "Successfully installed shrink-client" in install.stdout

    [uploaded] = runner.uploaded
    assert uploaded.name == "compressed-model" and uploaded.path == tmp_path / "workspace" / "compressed"
    [model] = uploaded.files
    with Client(url=examples_stack.base, api_key=api_key) as client:
        job = next(client.jobs())
        assert job.state == "succeeded" and job.labels == {}
        assert client.get_model(job.model_id).name == "classifier-v1.2.0"
        best = next(a for a in job.artifacts() if a.best)
    assert model.name == best.filename and hashlib.sha256(model.read_bytes()).hexdigest() == best.sha256
    assert f"job {job.id} succeeded" in results[-2].stderr


@pytest.mark.parametrize(("spec", "says"), [
    (FAILING_SPEC, "device_unavailable"),
    (UNMET_SPEC, "has no best candidate"),
], ids=["job-fails", "no-candidate-meets-the-bound"])
def test_the_compress_step_fails_the_build_when_the_job_gives_no_model(
    examples_stack: ServiceStack, api_key: str, model_file: Path, tmp_path: Path, spec: dict[str, Any], says: str
) -> None:
    runner = _runner(tmp_path / "workspace", examples_stack, api_key, model_file, spec)
    results = _run(runner, spec)
    assert results[-1].name == "Compress" and results[-1].returncode == 1, results[-1]
    assert says in results[-1].stderr and "Traceback" not in results[-1].stderr
    assert not runner.uploaded and not (tmp_path / "workspace" / "compressed").exists()


def test_the_spec_files_beside_the_workflow_pass_the_services_checks() -> None:
    folder = WORKFLOW.parent
    for index, step in enumerate(json.loads((folder / "recipe.json").read_text())):
        capabilities.validate_step(step, index)
    capabilities.validate_benchmark(json.loads((folder / "benchmark.json").read_text()))
    GoalSpec.model_validate(json.loads((folder / "goal.json").read_text()))
