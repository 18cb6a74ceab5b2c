"""What a job's ``benchmark`` section may say."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class BenchmarkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runtime: Literal["onnxruntime", "torch"] = "onnxruntime"
    device: Literal["cpu", "cuda"] = "cpu"
    batch_sizes: list[int] = Field(default_factory=lambda: [1], min_length=1, max_length=8)
    sequence_length: int = Field(64, ge=1, le=4096, description="for symbolic sequence axes without a dataset")
    warmup_runs: int = Field(5, ge=0, le=1000)
    min_runs: int = Field(20, ge=5, le=100_000)
    max_runs: int = Field(400, ge=5, le=100_000)
    time_budget_seconds: float = Field(20.0, gt=0, le=3600, description="per batch size, all models together")
    target_ci_half_width: float = Field(0.03, gt=0, le=1, description="stop when the p50's 95% CI is this narrow (relative)")
    fidelity_rows: int = Field(64, ge=1, le=100_000)
    threads: int = Field(0, ge=0, le=512, description="intra-op threads; 0 = the runtime's default")
