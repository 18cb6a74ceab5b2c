"""The optimizer side of the loop: AdamW with decay on weight matrices only, linear warm-up then
cosine (or linear) decay, mixed precision on CUDA, dropout switched off on request."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.context import PassContext
from engine.training.config import TrainConfig

if TYPE_CHECKING:
    from engine.formats.torch_model import TorchModel


def adamw(student: TorchModel, config: TrainConfig, lr: float) -> tuple[Any, list[Any]]:
    """AdamW over the student's trainable parameters; returns it and those parameters."""
    import torch

    params = [p for p in student.module.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]  # biases and norms: decay hurts, as in BERT
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
    )
    return optimizer, params


def total_steps(train_rows: int, config: TrainConfig) -> int:
    """Optimizer steps of the whole run: every epoch's batches, capped by ``max_steps``."""
    steps = math.ceil(train_rows / config.batch_size) * config.epochs
    if config.max_steps is not None:
        steps = min(steps, config.max_steps)
    return steps


def scheduler(optimizer: Any, steps: int, config: TrainConfig) -> Any:
    """Linear warm-up over ``warmup_fraction`` of ``steps``, then ``config.schedule`` decay."""
    import torch

    warmup = int(steps * config.warmup_fraction)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(steps, warmup, config.schedule))


def _schedule(total_steps: int, warmup_steps: int, kind: str) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        progress = min(1.0, progress)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def autocast(ctx: PassContext, config: TrainConfig) -> tuple[Callable[[], Any], Any]:
    """The autocast context and a GradScaler (float16 only) for this device."""
    import torch

    if not (config.mixed_precision and ctx.device.startswith("cuda") and torch.cuda.is_available()):
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def dropout_off(module: Any) -> list[tuple[Any, float]]:
    """Sets every dropout layer's rate to 0 (transformers' attention dropout reads the same
    layer's ``p``); returns the rates to put back."""
    import torch.nn as nn

    layers = [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    rates = [(m, float(m.p)) for m in layers]
    for m in layers:
        m.p = 0.0
    return rates
