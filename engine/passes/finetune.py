"""Fine-tuning with the shared training loop: on class labels when the dataset has them and the
model outputs logits, else toward the uploaded model's outputs (self-distillation), which is how
a pruned, factorized or quantization-aware model recovers without labels."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.context import PassContext
from engine.model import ModelFile
from engine.registry import Pass
from engine.training import TrainConfig


class FinetuneConfig(TrainConfig):
    objective: Literal["auto", "labels", "distill"] = Field(
        "auto",
        description="labels: cross-entropy on the dataset's labels; distill: match the uploaded model's outputs; auto: labels when present",
    )


class Finetune(Pass[FinetuneConfig]):
    op = "finetune"
    method = "train"
    summary = "fine-tuning (AdamW, warm-up + cosine, early stopping, resumable per epoch)"
    accepts = ("onnx", "hf")
    devices = ("cpu", "cuda")
    needs_dataset = True
    default_for_op = True

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        from engine import training
        from engine.formats.torch_model import load_torch, save_torch

        cfg = self.config
        tm = load_torch(model)
        result = training.fit(tm, ctx, cfg, objective=cfg.objective, name="finetune")
        ctx.add_report_section("finetune", {**result.summary(), "history": result.history})
        return save_torch(tm, ctx.work_dir)
