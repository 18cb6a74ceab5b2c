"""The shared training loop (``loop``), re-exported as the package's API."""

from engine.training.loop import (
    DEFAULT_LR,
    EVAL_BATCH,
    LENGTH_GROUP_BATCHES,
    FitResult,
    Objective,
    TrainConfig,
    batch_rows,
    evaluate,
    fit,
    indexed_batches,
    resolve_objective,
    torch_batches,
)

__all__ = [
    "DEFAULT_LR",
    "EVAL_BATCH",
    "LENGTH_GROUP_BATCHES",
    "FitResult",
    "Objective",
    "TrainConfig",
    "batch_rows",
    "evaluate",
    "fit",
    "indexed_batches",
    "resolve_objective",
    "torch_batches",
]
