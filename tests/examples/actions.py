"""Just enough of a GitHub Actions runner to run a workflow's job here: its `run:` steps in bash
as the runner runs them (`shell: bash` is `bash --noprofile --norc -eo pipefail`), with
`${{ ... }}` expressions taken from the contexts the test gives, and the few actions the example
uses stood in for. A step or an expression it does not know fails the test, so the workflow
cannot grow a step that goes untested."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{\s*([\w.-]+)\s*\}\}")
STEP_KEYS = {"name", "uses", "with", "run", "env"}


@dataclass
class StepResult:
    name: str
    returncode: int
    stdout: str = ""
    stderr: str = ""


@dataclass
class Uploaded:
    name: str
    path: Path
    files: list[Path]


@dataclass
class Runner:
    """Runs one job of ``workflow`` in ``workspace`` (what the first checkout gives)."""

    workflow: dict[str, Any]
    workspace: Path
    repository: Path  # the checkout of the Shrink repository
    contexts: dict[str, Any]
    results: list[StepResult] = field(default_factory=list)
    uploaded: list[Uploaded] = field(default_factory=list)
    path: list[str] = field(default_factory=lambda: ["/usr/local/bin", "/usr/bin", "/bin"])

    @staticmethod
    def load(path: Path) -> dict[str, Any]:
        workflow = yaml.safe_load(path.read_text())
        # YAML 1.1 reads the key `on` as True.
        workflow["on"] = workflow.pop(True, workflow.get("on"))
        return workflow

    def expand(self, text: str, env: dict[str, str]) -> str:
        def value(match: re.Match[str]) -> str:
            node: Any = {**self.contexts, "env": env}
            for part in match.group(1).split("."):
                node = node[part]  # a KeyError: an expression the test did not provide
            return str(node)

        return EXPRESSION.sub(value, text)

    def run(self, job: str, *, replace: dict[str, str] | None = None) -> list[StepResult]:
        """Every step until one fails (the runner's default). ``replace``: text replaced in the
        `run:` scripts before they run."""
        spec = self.workflow["jobs"][job]
        env: dict[str, str] = {}
        for level in (self.workflow.get("env", {}), spec.get("env", {})):
            env.update({k: self.expand(str(v), env) for k, v in level.items()})
        for step in spec["steps"]:
            assert set(step) <= STEP_KEYS, f"a step key the runner here does not know: {set(step) - STEP_KEYS}"
            step_env = {**env, **{k: self.expand(str(v), env) for k, v in step.get("env", {}).items()}}
            name = step.get("name") or step.get("uses") or step["run"].splitlines()[0]
            if "uses" in step:
                with_ = {k: self.expand(str(v), step_env) for k, v in step.get("with", {}).items()}
                result = self._action(name, step["uses"], with_)
            else:
                script = self.expand(step["run"], step_env)
                for old, new in (replace or {}).items():
                    script = script.replace(old, new)
                result = self._bash(name, script, step_env)
            self.results.append(result)
            if result.returncode != 0:
                break
        return self.results

    def _bash(self, name: str, script: str, env: dict[str, str]) -> StepResult:
        process_env = {
            "PATH": os.pathsep.join(self.path), "HOME": os.environ.get("HOME", "/root"), "CI": "true",
            "GITHUB_WORKSPACE": str(self.workspace),
            # pip offline, building the client with the setuptools already installed.
            "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            **env,
        }
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=self.workspace,
                              env=process_env, capture_output=True, text=True, timeout=300)
        return StepResult(name, done.returncode, done.stdout, done.stderr)

    def _action(self, name: str, uses: str, with_: dict[str, str]) -> StepResult:
        action = uses.split("@")[0]
        if action == "actions/checkout":
            if "path" in with_:  # the Shrink repository, beside the model's: its client is what is used
                assert with_.get("repository"), "a second checkout names its repository"
                shutil.copytree(self.repository / "clients", self.workspace / with_["path"] / "clients",
                                ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            return StepResult(name, 0)
        if action == "actions/setup-python":
            return self._setup_python(name)
        if action == "actions/upload-artifact":
            path = self.workspace / with_["path"]
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
            if not files and with_.get("if-no-files-found") == "error":
                return StepResult(name, 1, stderr=f"no files at {with_['path']}")
            self.uploaded.append(Uploaded(with_["name"], path, files))
            return StepResult(name, 0)
        raise AssertionError(f"an action the runner here does not stand in for: {uses}")

    def _setup_python(self, name: str) -> StepResult:
        """A fresh Python environment first on PATH, as setup-python gives. It sees this test's
        packages (the client's dependencies, pip, setuptools) through a .pth file, because the
        machine is offline; what `pip install` adds goes into it alone."""
        venv = self.workspace.parent / "runner-python"
        subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # type: ignore[attr-defined]
        [packages] = list((venv / "lib").glob("python3*/site-packages"))
        (packages / "runner-tools.pth").write_text("\n".join(site.getsitepackages()) + "\n")
        self.path.insert(0, str(venv / "bin"))
        return StepResult(name, 0)
