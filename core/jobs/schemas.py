"""The job spec (docs/architecture.md, API contract): versioned, ``extra="forbid"``. Recipe steps
are checked against the pass registry's JSON schemas (core/capabilities.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class GoalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: Literal["accuracy", "fidelity"] = "fidelity"
    max_drop: float = Field(0.01, ge=0, le=1)
    objective: Literal["latency", "size"] = "latency"
    budget_minutes: float = Field(30, gt=0, le=24 * 60)


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    model_id: str = Field(min_length=1, max_length=40)
    dataset_id: str | None = Field(None, max_length=40)
    recipe: list[dict[str, Any]] = Field(default_factory=list, max_length=32)
    goal: GoalSpec | None = None
    benchmark: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    webhook_url: str | None = Field(None, max_length=2000)
    labels: dict[str, str] = Field(default_factory=dict, max_length=32)


class BenchmarkSpec(BaseModel):
    """``POST /v1/benchmarks``: a stored model alone, or against a reference model."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    model_id: str = Field(min_length=1, max_length=40)
    compare_to_model_id: str | None = Field(None, max_length=40, description="measured as the candidate beside model_id")
    dataset_id: str | None = Field(None, max_length=40)
    benchmark: dict[str, Any] = Field(default_factory=dict)
    webhook_url: str | None = Field(None, max_length=2000)
    labels: dict[str, str] = Field(default_factory=dict, max_length=32)
