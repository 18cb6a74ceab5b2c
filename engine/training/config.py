"""The options every training pass shares (``TrainConfig``) and their defaults."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from engine.registry import PassConfig

# What a run learns from: "labels" (cross-entropy, plus a distillation term when a teacher is
# given), "distill" (match the teacher only), "auto" (labels when the data and model allow).
Objective = Literal["auto", "labels", "distill"]

# Transformers are pre-trained: a small step keeps what they know. Graphs converted from ONNX
# (CNNs and the like) are usually small and recover quickly at the usual Adam rate.
DEFAULT_LR = {"hf": 5e-5, "fx": 1e-3}

# The kinds and bounds of options that every pass which trains (or measures on the job's rows)
# declares; each config keeps its own default and description.
LearningRate = Annotated[float, Field(gt=0, le=1.0)]
RowsPerStep = Annotated[int, Field(ge=1, le=4096)]
HeldOutShare = Annotated[float, Field(ge=0.01, le=0.5)]
TokensPerRow = Annotated[int, Field(ge=8, le=4096)]


class TrainConfig(PassConfig):
    """Training options shared by finetune, distill and the low-rank passes' recovery."""

    epochs: int = Field(3, ge=1, le=1000, description="passes over the training rows")
    lr: LearningRate | None = Field(
        None,
        description="peak AdamW learning rate; default 1e-3 for ONNX-origin graphs, 5e-5 for transformers",
    )
    batch_size: RowsPerStep = Field(32, description="rows per optimizer step")
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW decoupled weight decay")
    warmup_fraction: float = Field(
        0.1, ge=0, le=0.5, description="share of the steps with a linear warm-up"
    )
    schedule: Literal["cosine", "linear"] = Field(
        "cosine", description="learning-rate decay after warm-up"
    )
    max_grad_norm: float = Field(
        1.0, gt=0, le=1000, description="gradient clipping (global L2 norm)"
    )
    patience: int = Field(
        2,
        ge=1,
        le=100,
        description="stop after this many epochs without a better validation metric",
    )
    validation_fraction: HeldOutShare = Field(
        0.1, description="share of the dataset held out (split by the job's seed)"
    )
    max_steps: int | None = Field(
        None, ge=1, le=10_000_000, description="cap on optimizer steps (all epochs)"
    )
    max_length: TokensPerRow = Field(64, description="tokens per text row (text datasets only)")
    mixed_precision: bool = Field(
        True, description="autocast (bfloat16, else float16) when running on CUDA"
    )
    dropout: bool = Field(
        True,
        description="keep the model's dropout layers active while training; false sets them to 0 for this run",
    )


class ObjectiveConfig(TrainConfig):
    """``TrainConfig`` plus the choice of objective: the options of passes that train the model
    they receive on the job's data (finetune, qat)."""

    objective: Objective = Field(
        "auto",
        description="labels: cross-entropy on the dataset's labels; distill: match the uploaded model's outputs; auto: labels when present",
    )
