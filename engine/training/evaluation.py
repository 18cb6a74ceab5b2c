"""The validation metric the loop keeps the best epoch by, and the reference it compares with."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from engine.context import PassContext
from engine.data import Dataset
from engine.model import ModelFile, ModelFormat
from engine.training.batching import check_feedable, has_class_labels, token_lengths, torch_batches

if TYPE_CHECKING:
    from engine.formats.torch_model import TorchModel

EVAL_BATCH = 64


def evaluate(
    tm: TorchModel,
    ctx: PassContext,
    rows: Dataset,
    *,
    teacher: TorchModel | None = None,
    max_length: int = 64,
    prefer: Literal["auto", "labels", "teacher"] = "auto",
) -> tuple[str, float]:
    """The validation metric: accuracy with class labels and logits, else the mean cosine of the
    (mean-pooled, for token outputs) outputs to the teacher's (or the original's)."""
    import torch

    from engine.distillation import losses

    tm.module.eval()
    use_labels = prefer != "teacher" and has_class_labels(rows)
    if rows.texts is not None:
        # The metric is a mean over rows, so their order is free: sorted by length, batches carry
        # almost no padding (docstring sentences in batches of 64: 1.87x the real tokens in
        # random order, 1.01x sorted).
        check_feedable(rows, tm)
        rows = rows.take(np.argsort(token_lengths(rows, tm, max_length), kind="stable"))
    correct = total = 0
    cos_sum = 0.0
    teacher_tm: TorchModel | None = None
    with torch.no_grad():
        for feeds, labels in torch_batches(
            rows, tm, EVAL_BATCH, shuffle=False, seed=0, max_length=max_length, device=ctx.device
        ):
            out = tm.forward(feeds).float()
            if use_labels and out.dim() == 2 and labels is not None:
                correct += int((out.argmax(-1) == labels).sum())
                total += len(labels)
                continue
            use_labels = False
            if teacher_tm is None:
                teacher_tm = teacher or load_original(ctx)
            ref = teacher_tm.forward(feeds).float()
            cos = losses.output_cosine(out, ref, feeds.get("attention_mask"))
            cos_sum += float(cos.sum())
            total += len(cos)
    if total == 0:
        return ("accuracy" if use_labels else "cosine_to_teacher"), 0.0
    if use_labels:
        return "accuracy", correct / total
    return "cosine_to_teacher", cos_sum / total


@lru_cache(maxsize=2)
def _load_original_cached(path: str, fmt: ModelFormat, device: str) -> TorchModel:
    from engine.formats.torch_model import load_torch

    tm = load_torch(ModelFile(Path(path), fmt))
    tm.module.to(device).eval()
    for p in tm.module.parameters():
        p.requires_grad_(False)
    return tm


def load_original(ctx: PassContext) -> TorchModel:
    """The uploaded model as the default teacher / reference (loaded once per process)."""
    return _load_original_cached(str(ctx.original.path), ctx.original.format, ctx.device)
