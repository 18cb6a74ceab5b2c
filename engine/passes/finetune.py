"""Fine-tuning with the shared training loop: on class labels when the dataset has them and the
model outputs logits, else toward the uploaded model's outputs (self-distillation), which is how
a pruned, factorized or quantization-aware model recovers without labels."""

from __future__ import annotations

from engine.context import PassContext
from engine.model import ModelFile
from engine.registry import Pass
from engine.training import ObjectiveConfig


class FinetuneConfig(ObjectiveConfig):
    pass


class Finetune(Pass[FinetuneConfig]):
    op = "finetune"
    method = "train"
    summary = "fine-tuning (AdamW, warm-up + cosine, early stopping, resumable per epoch)"
    accepts = ("onnx", "hf")
    devices = ("cpu", "cuda")
    needs_dataset = True
    default_for_op = True

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        from engine.formats.torch_model import load_torch, save_torch
        from engine.training import fit

        cfg = self.config
        tm = load_torch(model)
        result = fit(tm, ctx, cfg, objective=cfg.objective, name="finetune")
        ctx.add_report_section("finetune", {**result.summary(), "history": result.history})
        return save_torch(tm, ctx.work_dir)
