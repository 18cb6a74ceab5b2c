"""The client installs and imports on its own: it imports nothing of the server, no torch or
onnx, only the dependencies its pyproject declares; and the API process never loads it."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib

from tests.client.conftest import CLIENT_ROOT

ROOT = CLIENT_ROOT.parents[1]


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PYTHONPATH": f"{ROOT}:{CLIENT_ROOT}", "PATH": "/usr/bin:/bin"})
    return {m.split(".")[0] for m in out.stdout.split()}


def test_the_client_and_its_commands_load_nothing_of_the_server() -> None:
    loaded = _loaded_after("import shrink_client, shrink_client.cli")
    assert not loaded & {"api", "core", "worker", "engine", "bench", "torch", "onnx", "onnxruntime", "numpy"}


def test_the_client_imports_only_what_its_pyproject_declares() -> None:
    declared = tomllib.loads((CLIENT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    allowed = {d.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip() for d in declared} | {"shrink_client"}
    imported = set()
    for file in (CLIENT_ROOT / "shrink_client").rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) <= allowed


def test_the_api_process_never_imports_the_client() -> None:
    loaded = _loaded_after("from api.app import create_app; app = create_app(); app.openapi()")
    assert "shrink_client" not in loaded
