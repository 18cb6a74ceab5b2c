"""What the engine can do, as the API sees it: the pass registry's JSON document, read once per
process from the engine through the sandbox (the API never imports the engine or torch), and the
validation of recipe steps against it (JSON Schema of each pass's config)."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from core.errors import Unavailable, ValidationFailed

_lock = threading.Lock()
_cached: dict[str, Any] | None = None


def get_capabilities() -> dict[str, Any]:
    global _cached
    with _lock:
        if _cached is None:
            from core.sandbox import run_engine

            with tempfile.TemporaryDirectory(prefix="shrink-caps-") as tmp:
                result = run_engine(["capabilities"], work_dir=Path(tmp), timeout=120)
            if not result.ok:
                raise Unavailable(f"the engine did not list its capabilities: {result.error}")
            _cached = result.result
        return _cached


def resolve_pass(op: Any, method: Any, where: str) -> dict[str, Any]:
    """The capability entry of the pass a step selects, resolved from the engine's ``ops`` map
    (each op's methods and default) as the engine itself resolves it."""
    document = get_capabilities()
    ops: dict[str, dict[str, Any]] = document["ops"]
    if not isinstance(op, str) or op not in ops:
        known = sorted(ops)
        raise ValidationFailed(
            f"{where}.op: unknown op {op!r}; known ops: {', '.join(known)}",
            code="spec_invalid",
            detail={"field": f"{where}.op", "known": known},
        )
    if method is None:
        method = ops[op]["default"]
        if method is None:
            raise ValidationFailed(f"{where}.method: op {op!r} needs a method", code="spec_invalid", detail={"field": f"{where}.method"})
    elif method not in ops[op]["methods"]:
        methods = sorted(ops[op]["methods"])
        raise ValidationFailed(
            f"{where}.method: unknown method {method!r} for op {op!r}; known: {', '.join(methods)}",
            code="spec_invalid",
            detail={"field": f"{where}.method", "known": methods},
        )
    return next(p for p in document["passes"] if p["op"] == op and p["method"] == method)


def _path(where: str, error: Any) -> str:
    parts = [where, *[f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path]]
    return "".join(parts)


def validate_step(step: Any, index: int) -> dict[str, Any]:
    """Validate one recipe step; returns the pass's capability entry."""
    where = f"recipe[{index}]"
    if not isinstance(step, dict):
        raise ValidationFailed(f"{where}: each step is an object with an 'op'", code="spec_invalid", detail={"field": where})
    entry = resolve_pass(step.get("op"), step.get("method"), where)
    errors = sorted(Draft202012Validator(entry["config_schema"]).iter_errors(step), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        field = _path(where, first)
        if first.validator == "additionalProperties":
            extra = sorted(set(step) - set(entry["config_schema"].get("properties", {})))
            field = f"{where}.{extra[0]}" if extra else field
        raise ValidationFailed(
            f"{field}: {first.message}",
            code="spec_invalid",
            detail={"field": field, "pass": entry["name"], "errors": [e.message for e in errors[:10]]},
        )
    return entry


def validate_benchmark(benchmark: dict[str, Any]) -> None:
    schema = get_capabilities().get("benchmark_schema")
    if not schema:
        return
    errors = list(Draft202012Validator(schema).iter_errors(benchmark))
    if errors:
        field = _path("benchmark", errors[0])
        raise ValidationFailed(f"{field}: {errors[0].message}", code="spec_invalid", detail={"field": field})


def goal_methods(model_format: str, *, has_dataset: bool) -> list[str]:
    """The ops a goal-driven search can use on a model of this format (engine/search/space.py)."""
    search = get_capabilities().get("search") or {}
    needs = set(search.get("needs_dataset", []))
    return [m for m in search.get("methods", {}).get(model_format, []) if has_dataset or m not in needs]
