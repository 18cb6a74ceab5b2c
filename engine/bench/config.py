"""What a job's ``benchmark`` section may say."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class BenchmarkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runtime: Literal["onnxruntime", "torch"] = "onnxruntime"
    device: Literal["cpu", "cuda"] = "cpu"
    batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default_factory=lambda: [1], min_length=1, max_length=8)
    sequence_length: int = Field(64, ge=1, le=4096, description="for symbolic sequence axes without a dataset")
    warmup_runs: int = Field(10, ge=0, le=1000)
    min_runs: int = Field(30, ge=5, le=100_000)
    max_runs: int = Field(2000, ge=5, le=100_000)
    time_budget_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="per batch size and per model: with a baseline and two candidates, a batch size "
        "is timed for at most 3 x this many seconds",
    )
    target_ci_half_width: float = Field(
        0.03,
        gt=0,
        le=1,
        description="stop timing a batch size once every p50's and every speedup's 95% interval "
        "is this narrow (half-width relative to the value)",
    )
    session_noise: float = Field(
        0.01,
        ge=0,
        le=0.5,
        description="relative standard deviation of latency between two runtime sessions of one "
        "model (memory layout), folded into every speedup interval",
    )
    fidelity_rows: int = Field(
        256, ge=1, le=100_000, description="rows on which fidelity and the task metric are computed"
    )
    fidelity_pooling: Literal["auto", "none", "mean", "cls", "max"] = Field(
        "auto",
        description="what the output cosine compares for a per-token output ([batch, sequence, "
        "hidden]): none, every real token's output; mean, cls or max, the sentence embedding "
        "pooled from them; auto, the pooling a sentence-transformers checkpoint declares "
        "(modules.json and its Pooling config), else none",
    )
    threads: int = Field(0, ge=0, le=512, description="intra-op threads; 0 = the runtime's default")
    measure_memory: bool = Field(
        True, description="measure each model's peak memory in a child process of its own"
    )
    min_cosine: float | None = Field(
        None, ge=-1, le=1, description="flag candidates whose mean output cosine to the original is lower"
    )
    max_quality_drop: float | None = Field(
        None,
        ge=0,
        description="flag candidates whose task metric (accuracy, or MSE) is worse than the "
        "baseline's by more than this, in the metric's units (0.01 = one accuracy point)",
    )
