"""Knowledge distillation into the current model or into a smaller student derived from it.

Loss (engine.distillation.losses): with class labels, alpha * KL(teacher_T || student_T) * T^2 +
(1 - alpha) * CE; without labels the soft targets alone; for embedding models (token outputs)
cosine + relative MSE to the teacher's outputs; optionally hidden states matched layer to layer.
The teacher is the uploaded model, run once per batch without gradients.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.context import PassContext
from engine.distillation.students import StudentKind
from engine.model import ModelFile
from engine.registry import Pass
from engine.training import TrainConfig


class DistillConfig(TrainConfig):
    student: StudentKind = Field(
        "current",
        description=(
            "current: the model this step receives (e.g. recovering after pruning or low-rank); "
            "fewer_layers / narrower_ffn: a smaller transformer initialized from it; width: a CNN "
            "(or any non-transformer) with width_multiplier of its channels"
        ),
    )
    keep_every: int = Field(
        2, ge=2, le=12, description="fewer_layers: keep every k-th block (and the last)"
    )
    layers: int | None = Field(
        None,
        ge=1,
        le=128,
        description="fewer_layers: keep this many blocks, spread evenly and ending with the last "
        "(4 of MiniLM-L6's 6: blocks 1, 2, 4, 5, 0-based); when set, keep_every is not used",
    )
    ffn_ratio: float = Field(
        0.5, ge=0.05, le=0.95, description="narrower_ffn: share of the MLP width kept"
    )
    width_multiplier: float = Field(
        0.5, ge=0.1, le=0.95, description="width: share of the channels kept"
    )
    alpha: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="weight of the soft-target term against hard-label cross-entropy",
    )
    temperature: float = Field(
        2.0, gt=0.0, le=20.0, description="softmax temperature of the soft targets"
    )
    hidden_weight: float = Field(
        0.0,
        ge=0.0,
        le=100.0,
        description="weight of matching intermediate hidden states (transformers); 0: off",
    )
    teacher: Literal["original", "current"] = Field(
        "original", description="the uploaded model, or the model this step receives"
    )
    # Off by default: the student reproduces a deterministic teacher, not noisy labels, and
    # dropout only slows that down. MiniLM-L6, 3-layer student, 9,000 sentences, the same
    # schedule: cosine to the teacher after epoch 1 0.900 without dropout, 0.886 with it.
    dropout: bool = Field(
        False,
        description="keep the student's dropout layers active while training (off by default: matching a teacher needs no noise)",
    )


class Distill(Pass[DistillConfig]):
    op = "distill"
    method = "kd"
    summary = "knowledge distillation (soft targets, embeddings, hidden states) into the model or a smaller student"
    accepts = ("onnx", "hf")
    devices = ("cpu", "cuda")
    needs_dataset = True
    default_for_op = True

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        from engine.distillation import students
        from engine.formats.torch_model import load_torch, save_torch
        from engine.training import fit

        cfg = self.config
        current = load_torch(model)
        teacher = load_torch(ctx.original) if cfg.teacher == "original" else load_torch(model)
        student = students.derive(
            current,
            cfg.student,
            keep_every=cfg.keep_every,
            layers=cfg.layers,
            ffn_ratio=cfg.ffn_ratio,
            width_multiplier=cfg.width_multiplier,
        )
        ctx.resolved.update(student.resolved)
        ctx.resolved["student_params"] = sum(p.numel() for p in student.model.module.parameters())
        ctx.resolved["teacher_params"] = sum(p.numel() for p in teacher.module.parameters())
        result = fit(
            student.model,
            ctx,
            cfg,
            teacher=teacher,
            name="distill",
            alpha=cfg.alpha,
            temperature=cfg.temperature,
            hidden_weight=cfg.hidden_weight,
            layer_map=student.layer_map if cfg.hidden_weight > 0 else None,
        )
        ctx.add_report_section(
            "distill", {"student": cfg.student, **result.summary(), "history": result.history}
        )
        return save_torch(student.model, ctx.work_dir)
