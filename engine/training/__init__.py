"""The one training loop every pass that needs recovery uses (fine-tuning, distillation,
quantization-aware training, pruning and low-rank recovery).

AdamW, linear warm-up then cosine (or linear) decay, gradient clipping, early stopping on the
validation metric (the best weights are restored), fixed seeds, a deterministic train/validation
split. Each epoch's state is saved under ``ctx.checkpoint_dir``; a job delivered again after its
worker died resumes from the last finished epoch instead of starting over.

The objective follows the data: with labels and logits it is cross-entropy (plus a distillation
term when a teacher is given); without labels the student learns to match the teacher (or the
uploaded original) -- KL on logits, cosine + MSE on embeddings. Losses live in
``engine.distillation.losses``. Options and measured results: ``docs/methods/finetune.md`` and
``docs/methods/distill.md``.

- ``config``: ``TrainConfig``, the options every training pass shares, and their defaults.
- ``batching``: the dataset as batches of the model's input tensors.
- ``evaluation``: the validation metric.
- ``objective``: labels or teacher, and the teacher made ready.
- ``optim``: optimizer, learning-rate schedule, mixed precision.
- ``checkpoint``: per-epoch checkpoints and resuming from them.
- ``loop``: ``fit``.

Importing this package loads no torch (listing capabilities imports every pass's config).
"""

from engine.training.batching import (
    LENGTH_GROUP_BATCHES,
    batch_rows,
    indexed_batches,
    torch_batches,
)
from engine.training.config import DEFAULT_LR, Objective, ObjectiveConfig, TrainConfig
from engine.training.evaluation import EVAL_BATCH, evaluate
from engine.training.loop import FitResult, fit
from engine.training.objective import resolve_objective

__all__ = [
    "DEFAULT_LR",
    "EVAL_BATCH",
    "LENGTH_GROUP_BATCHES",
    "FitResult",
    "Objective",
    "ObjectiveConfig",
    "TrainConfig",
    "batch_rows",
    "evaluate",
    "fit",
    "indexed_batches",
    "resolve_objective",
    "torch_batches",
]
