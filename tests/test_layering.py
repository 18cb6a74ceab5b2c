"""Imports go one way (docs/architecture.md, the parts): api -> core; worker -> core, engine;
engine -> nothing of ours. The API process never imports torch, onnx, the engine or the worker; the
engine (every file of it, packages included) imports nothing of the service; listing capabilities
is light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: str) -> set[str]:
    found = set()
    for file in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return {m.split(".")[0] for m in out.stdout.split()}


def test_api_process_never_imports_torch_onnx_engine_or_worker() -> None:
    loaded = _modules_after("from api.app import create_app; app = create_app(); app.openapi()")
    assert not loaded & {"torch", "onnx", "onnxruntime", "transformers", "engine", "worker"}


def test_engine_imports_nothing_of_the_service() -> None:
    assert not _imports("engine") & {"api", "core", "worker", "fastapi", "sqlalchemy", "celery", "boto3"}


def test_api_and_core_do_not_import_engine_or_worker() -> None:
    assert not _imports("api") & {"engine", "worker", "torch", "onnx", "onnxruntime"}
    assert not _imports("core") & {"engine", "worker", "torch", "onnx", "onnxruntime", "api"}


def test_listing_capabilities_does_not_import_torch() -> None:
    loaded = _modules_after("from engine.registry import capabilities; assert capabilities()['passes']")
    assert "torch" not in loaded and "onnxruntime" not in loaded


def test_each_pass_module_declares_one_method_and_keeps_no_mechanics_helpers() -> None:
    """``engine/passes/`` holds one file per user-visible method; the mechanics live in the
    family's package (quantization, pruning, lowrank, distillation, training)."""
    import importlib

    from engine.registry import Pass

    files = sorted((ROOT / "engine" / "passes").glob("*.py"))
    assert not [f.name for f in files if f.name.startswith("_") and f.name != "__init__.py"]
    for file in files:
        if file.name == "__init__.py":
            continue
        module = importlib.import_module(f"engine.passes.{file.stem}")
        declared = [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type)
            and issubclass(obj, Pass)
            and obj.__module__ == module.__name__
            and getattr(obj, "method", None)
        ]
        assert len(declared) == 1, (file.name, declared)
        assert file.stem.startswith(declared[0].op), f"{file.name} declares op {declared[0].op!r}"
