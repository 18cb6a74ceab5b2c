"""The service resolves a recipe step's op and method from the engine's published ``ops`` map,
exactly as the engine's registry does, and keeps its own error codes, fields and messages."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from core import capabilities
from core.errors import ValidationFailed
from engine.errors import ConfigInvalid
from engine.registry import capabilities as engine_capabilities
from engine.registry import get_pass


@pytest.fixture
def document(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The engine's capabilities document, served to core as if read through the sandbox."""
    doc = copy.deepcopy(engine_capabilities())
    monkeypatch.setattr(capabilities, "_cached", doc)
    return doc


def _refusal(op: Any, method: Any) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        capabilities.resolve_pass(op, method, "recipe[0]")
    assert caught.value.code == "spec_invalid"
    return caught.value


def test_every_op_and_method_resolves_to_the_pass_the_engine_runs(document: dict[str, Any]) -> None:
    assert document["ops"]["quantize"]["default"] == "auto"
    for op, entry in document["ops"].items():
        assert entry["methods"] == sorted(p["method"] for p in document["passes"] if p["op"] == op)
        for method in [None, *entry["methods"]]:
            engine_pass = get_pass(op, method)
            resolved = capabilities.resolve_pass(op, method, "recipe[0]")
            assert (resolved["op"], resolved["method"]) == (engine_pass.op, engine_pass.method)
            assert resolved["name"] == f"{engine_pass.op}.{engine_pass.method}"


def test_unknown_op_lists_the_known_ops(document: dict[str, Any]) -> None:
    ops = sorted(document["ops"])
    error = _refusal("sharpen", None)
    assert error.message == f"recipe[0].op: unknown op 'sharpen'; known ops: {', '.join(ops)}"
    assert error.detail == {"field": "recipe[0].op", "known": ops}
    assert _refusal(7, "auto").detail["field"] == "recipe[0].op"
    with pytest.raises(ConfigInvalid, match="unknown op 'sharpen'"):
        get_pass("sharpen")


def test_unknown_method_lists_the_ops_methods(document: dict[str, Any]) -> None:
    methods = document["ops"]["prune"]["methods"]
    error = _refusal("prune", "sideways")
    assert error.message == f"recipe[0].method: unknown method 'sideways' for op 'prune'; known: {', '.join(methods)}"
    assert error.detail == {"field": "recipe[0].method", "known": methods}
    with pytest.raises(ConfigInvalid, match="unknown method 'sideways' for op 'prune'"):
        get_pass("prune", "sideways")


def test_an_op_without_a_default_needs_a_method(document: dict[str, Any]) -> None:
    document["ops"]["quantize"]["default"] = None
    error = _refusal("quantize", None)
    assert error.message == "recipe[0].method: op 'quantize' needs a method"
    assert error.detail == {"field": "recipe[0].method"}
    assert capabilities.resolve_pass("quantize", "dynamic", "recipe[0]")["name"] == "quantize.dynamic"
