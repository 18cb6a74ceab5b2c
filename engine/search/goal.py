"""A goal with its defaults resolved against the model and the dataset, and how a benchmarked
candidate scores against it: its quality drop (the constraint) and its gain (the objective)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.data import Dataset
from engine.errors import ConfigInvalid, DatasetRequired

METRICS = ("accuracy", "f1", "cosine", "mse")
OBJECTIVES = ("latency", "size", "macs", "memory")
METHODS = ("quantize", "prune", "lowrank", "distill")
LABEL_METRICS = ("accuracy", "f1", "mse")


@dataclass(frozen=True)
class Goal:
    metric: str
    max_drop: float
    objective: str
    batch_size: int
    budget_seconds: float
    methods: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        out["methods"] = list(self.methods)
        out["budget_minutes"] = round(self.budget_seconds / 60, 3)
        del out["budget_seconds"]
        return out


def resolve_goal(spec: dict[str, Any], *, dataset: Dataset | None, batch_sizes: list[int], applicable: list[str]) -> Goal:
    """Defaults (docs/architecture.md): accuracy when the dataset has class labels (MSE for float
    labels), else cosine to the original's outputs; drop 0.01; latency at the first benchmark batch
    size; 30 minutes; every applicable op."""
    metric = spec.get("metric")
    if metric is None:
        if dataset is not None and dataset.labels is not None:
            metric = "accuracy" if dataset.class_labels() is not None else "mse"
        else:
            metric = "cosine"
    if metric not in METRICS:
        raise ConfigInvalid(f"goal.metric: {metric!r} is not one of {', '.join(METRICS)}", detail={"field": "goal.metric"})
    if metric in LABEL_METRICS and (dataset is None or dataset.labels is None):
        raise DatasetRequired(f"goal.metric {metric!r} needs a dataset with labels; use 'cosine' without one", detail={"field": "goal.metric"})
    wanted = spec.get("methods") or list(applicable)
    methods = tuple(m for m in METHODS if m in wanted and m in applicable)
    if not methods:
        raise ConfigInvalid(f"goal.methods: none of {', '.join(wanted)} applies to this model", detail={"field": "goal.methods"})
    return Goal(
        metric=metric,
        max_drop=float(spec.get("max_drop", 0.01)),
        objective=str(spec.get("objective", "latency")),
        batch_size=int(spec.get("batch_size") or batch_sizes[0]),
        budget_seconds=float(spec.get("budget_minutes", 30)) * 60,
        methods=methods,
    )


def quality_drop(goal: Goal, baseline: dict[str, Any], candidate: dict[str, Any]) -> float | None:
    """How much worse the candidate is than the original on the goal's metric, in its units
    (positive = worse). None when the benchmark could not measure it."""
    if goal.metric == "cosine":
        cos = candidate.get("fidelity", {}).get("cosine_mean")
        return None if cos is None else 1.0 - float(cos)
    key = {"accuracy": "accuracy", "f1": "f1_macro", "mse": "mse"}[goal.metric]
    base, cand = baseline.get("quality", {}).get(key), candidate.get("quality", {}).get(key)
    if base is None or cand is None:
        return None
    return float(cand - base) if goal.metric == "mse" else float(base - cand)


def objective_gain(goal: Goal, ratios: dict[str, Any]) -> float | None:
    """The candidate's gain over the original on the objective (>1 = better): speedup at the
    goal's batch size, or the size, MACs or peak-memory ratio."""
    if goal.objective == "latency":
        entry = ratios.get("speedup", {}).get(str(goal.batch_size))
        return None if entry is None else float(entry["value"])
    value = ratios.get({"size": "size", "macs": "macs", "memory": "peak_memory"}[goal.objective])
    return None if value is None else float(value)
