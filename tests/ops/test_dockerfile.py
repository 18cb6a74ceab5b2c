"""Dockerfile and .dockerignore, read as the builder reads them (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from core import cli
from tests.ops.shrink_contract import (
    ROOT,
    parse_shrink_command,
    strip_init,
    unknown_shrink_names,
)

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # -1 before the first FROM


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (the default `\\` escape)."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are removed by the builder
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = pending + stripped
        pending = ""
        if not logical.strip():
            continue
        keyword, _, arguments = logical.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, arguments.strip(), stage))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(instruction.stage for instruction in instructions)
    return [instruction for instruction in instructions if instruction.stage == last]


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    defaults = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            name, _, value = instruction.arguments.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.arguments)
    assert isinstance(value, list), f"{instruction.keyword} must use the exec (JSON) form"
    return value


def runs(instructions: list[Instruction]) -> list[str]:
    return [instruction.arguments for instruction in instructions if instruction.keyword == "RUN"]


def test_base_image_is_a_build_arg_defaulting_to_python_311_slim(
    instructions: list[Instruction],
) -> None:
    preamble = [instruction for instruction in instructions if instruction.stage == -1]
    assert any(i.keyword == "ARG" and i.arguments.startswith("BASE_IMAGE=") for i in preamble)
    assert arg_defaults(preamble)["BASE_IMAGE"].startswith("python:3.11-slim")
    froms = [
        instruction.arguments.split()
        for instruction in instructions
        if instruction.keyword == "FROM"
    ]
    stage_names = {
        words[2].lower() for words in froms if len(words) == 3 and words[1].upper() == "AS"
    }
    for words in froms:
        assert words[0] == "${BASE_IMAGE}" or words[0].lower() in stage_names, words


def test_image_is_built_in_stages_and_the_final_one_copies_the_built_venv(
    instructions: list[Instruction],
) -> None:
    assert max(instruction.stage for instruction in instructions) >= 1
    copies = [i.arguments for i in final_stage(instructions) if i.keyword == "COPY"]
    assert any(arguments.startswith("--from=") and "/opt/venv" in arguments for arguments in copies)
    final_runs = " ".join(runs(final_stage(instructions)))
    assert "pip install" not in final_runs, "the runtime stage must not build anything"


def test_final_stage_runs_as_a_non_root_numeric_user(instructions: list[Instruction]) -> None:
    users = [i.arguments for i in final_stage(instructions) if i.keyword == "USER"]
    assert users, "the final stage sets no USER: the container would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, users[-1]
    assert not group or (group.isdigit() and int(group) != 0)


def dockerfile_uid() -> int:
    users = [
        i.arguments
        for i in final_stage(parse_dockerfile(DOCKERFILE.read_text()))
        if i.keyword == "USER"
    ]
    return int(users[-1].partition(":")[0])


def test_project_is_installed_then_the_nodeps_requirements_without_dependencies(
    instructions: list[Instruction],
) -> None:
    commands = runs(instructions)
    nodeps = [
        n
        for n, run in enumerate(commands)
        if re.search(r"pip install --no-deps -r requirements-nodeps\.txt", run)
    ]
    assert nodeps, "requirements-nodeps.txt must be installed with --no-deps"
    dependencies = [
        n for n, run in enumerate(commands) if "pip install -r /tmp/requirements.txt" in run
    ]
    project = [
        n
        for n, run in enumerate(commands)
        if re.search(r"pip install (--no-deps )?(-e )?\.(\s|$)", run)
    ]
    assert dependencies and project
    assert dependencies[0] < nodeps[0], (
        "the project's dependencies go in before the --no-deps extras"
    )
    # The dependency list installed is pyproject.toml's own, not a copy that can drift.
    assert "tomllib.load(open('pyproject.toml'" in commands[dependencies[0]]


def test_torch_is_the_cpu_wheel_at_the_version_pyproject_pins(
    instructions: list[Instruction],
) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [dep for dep in pyproject["project"]["dependencies"] if re.match(r"torch\s*==", dep)]
    assert len(pins) == 1, pins
    pinned = pins[0].split("==", 1)[1].strip()
    defaults = arg_defaults(instructions)
    assert defaults["TORCH_VERSION"] == pinned
    assert defaults["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    torch_runs = [run for run in runs(instructions) if '"torch==${TORCH_VERSION}"' in run]
    assert torch_runs and '--extra-index-url "${TORCH_INDEX_URL}"' in torch_runs[0]


def test_the_gpu_image_swaps_onnxruntime_for_its_cuda_build_and_the_cpu_image_keeps_the_cpu_one(
    instructions: list[Instruction],
) -> None:
    assert arg_defaults(instructions)["ONNXRUNTIME_GPU_VERSION"] == ""
    swap = [run for run in runs(instructions) if "onnxruntime-gpu" in run]
    assert len(swap) == 1, swap
    # Only when the argument is set, the CPU build out first (both install the module
    # `onnxruntime`), and the build fails without the CUDA provider.
    assert '[ -n "${ONNXRUNTIME_GPU_VERSION}" ]' in swap[0]
    assert swap[0].index("pip uninstall -y onnxruntime") < swap[0].index('pip install "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}"')
    assert "'CUDAExecutionProvider' in p" in swap[0]
    # Swapped after the project's dependencies brought the CPU build in.
    all_runs = runs(instructions)
    assert all_runs.index(swap[0]) > next(i for i, run in enumerate(all_runs) if "tomllib.load(open('pyproject.toml'" in run)


def test_default_command_is_the_api_through_the_shrink_script(
    instructions: list[Instruction],
) -> None:
    stage = final_stage(instructions)
    entrypoint = exec_form([i for i in stage if i.keyword == "ENTRYPOINT"][-1])
    command = exec_form([i for i in stage if i.keyword == "CMD"][-1])
    argv = strip_init(entrypoint + command)
    assert argv[0] == "shrink"
    args = parse_shrink_command(argv)
    assert args.command == "api" and args.host == "0.0.0.0"
    exposed = [i.arguments for i in stage if i.keyword == "EXPOSE"]
    assert str(args.port) in " ".join(exposed).split()


def test_entrypoint_is_init_only_so_compose_and_kubernetes_commands_start_with_shrink(
    instructions: list[Instruction],
) -> None:
    entrypoint = exec_form([i for i in final_stage(instructions) if i.keyword == "ENTRYPOINT"][-1])
    assert strip_init(entrypoint) == [], f"ENTRYPOINT {entrypoint} would prefix every command"
    assert any("tini" in run for run in runs(instructions)), "tini is used but never installed"


def test_shrink_is_a_console_script_of_the_project() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = pyproject["project"]["scripts"]["shrink"]
    module, _, function = target.partition(":")
    assert module == "core.cli"
    assert callable(getattr(cli, function))


def test_environment_set_by_the_image_names_real_settings(instructions: list[Instruction]) -> None:
    names = set()
    for instruction in instructions:
        if instruction.keyword == "ENV":
            names |= set(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", instruction.arguments))
    assert "SHRINK_DATA_DIR" in names
    assert unknown_shrink_names(names) == set()


def dockerignore_patterns() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip("/")
    out = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
        elif pattern.startswith("**", index):
            out += ".*"
            index += 2
        elif pattern[index] == "*":
            out += "[^/]*"
            index += 1
        elif pattern[index] == "?":
            out += "[^/]"
            index += 1
        elif pattern[index] == "[":
            end = pattern.index("]", index)
            out += pattern[index : end + 1]
            index = end + 1
        else:
            out += re.escape(pattern[index])
            index += 1
    return re.compile(out + r"\Z")


def ignored_by_dockerignore(path: str, patterns: list[str]) -> bool:
    """Docker's rule: a path is out if the last pattern matching it or a parent folder excludes it."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern[1:] if negated else pattern)
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = ["tests", "**/__pycache__", "*.egg-info", "!tests/keep.txt"]
    assert ignored_by_dockerignore("tests/ops/test_compose.py", patterns)
    assert ignored_by_dockerignore("core/__pycache__/cli.cpython-311.pyc", patterns)
    assert ignored_by_dockerignore("shrink.egg-info/PKG-INFO", patterns)
    assert not ignored_by_dockerignore("tests/keep.txt", patterns)
    assert not ignored_by_dockerignore("core/cli.py", patterns)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "requirements-nodeps.txt",
        "core/cli.py",
        "core/settings.py",
        "api/__init__.py",
        "worker/__init__.py",
        "engine/__init__.py",
        "migrations/env.py",
        "alembic.ini",
    ],
)
def test_what_the_image_needs_is_in_the_build_context(path: str) -> None:
    assert not ignored_by_dockerignore(path, dockerignore_patterns())


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".cache/x",
        "var/shrink.db",
        "shrink.egg-info/PKG-INFO",
        "core/__pycache__/cli.pyc",
        "tests/ops/x.py",
    ],
)
def test_local_state_stays_out_of_the_build_context(path: str) -> None:
    assert ignored_by_dockerignore(path, dockerignore_patterns())


def test_every_file_copied_from_the_context_exists_and_is_not_ignored(
    instructions: list[Instruction],
) -> None:
    patterns = dockerignore_patterns()
    for instruction in instructions:
        if instruction.keyword != "COPY" or instruction.arguments.startswith("--from"):
            continue
        words = [word for word in instruction.arguments.split() if not word.startswith("--")]
        for source in words[:-1]:
            if source == ".":
                continue
            assert (ROOT / source).exists(), source
            assert not ignored_by_dockerignore(source, patterns), source
