"""Rounds of prune -> fine-tune under a quality bound, returning the last model that met it.

Both PyTorch pruning passes use this: a round prunes a bit more (the pass decides how), then
``engine.training.fit`` recovers on the job's data, then the validation metric (accuracy with
class labels, else cosine to the original's outputs) is compared with the unpruned model's. When
a round breaks ``max_metric_drop``, the model of the round before is restored and pruning stops.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import Field

from engine.context import PassContext
from engine.registry import PassConfig
from engine.training.config import HeldOutShare, LearningRate, RowsPerStep, TokensPerRow

if TYPE_CHECKING:
    from engine.formats.torch_model import TorchModel


class RecoveryOptions(PassConfig):
    """Fields every PyTorch pruning pass shares: rounds, fine-tuning and the quality bound."""

    steps: int = Field(
        1,
        ge=1,
        le=100,
        description="pruning rounds to reach the target; >1 prunes gradually with fine-tuning after each round",
    )
    finetune_epochs: int = Field(
        1,
        ge=0,
        le=100,
        description="fine-tuning epochs after each round (engine.training.fit); 0 or no dataset: none",
    )
    lr: LearningRate | None = Field(
        None,
        description="fine-tuning peak learning rate (default: the training loop's per-kind default)",
    )
    batch_size: RowsPerStep = Field(32, description="fine-tuning rows per optimizer step")
    max_steps_per_round: int | None = Field(
        None, ge=1, le=10_000_000, description="cap on optimizer steps of each round's fine-tuning"
    )
    max_metric_drop: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "quality bound: stop when the validation metric (accuracy, or cosine to the original) falls more "
            "than this below the unpruned model's, and return the last round that met it (needs a dataset)"
        ),
    )
    validation_fraction: HeldOutShare = Field(
        0.1,
        description="share of the dataset held out to measure the metric (split by the job's seed)",
    )
    max_length: TokensPerRow = Field(64, description="tokens per text row (text datasets only)")


def _train_config(options: RecoveryOptions) -> Any:
    from engine.training import TrainConfig

    return TrainConfig(
        epochs=max(1, options.finetune_epochs),
        lr=options.lr,
        batch_size=options.batch_size,
        validation_fraction=options.validation_fraction,
        max_steps=options.max_steps_per_round,
        max_length=options.max_length,
    )


def prune_in_rounds(
    tm: TorchModel,
    ctx: PassContext,
    options: RecoveryOptions,
    prune_round: Callable[[int], dict[str, Any]],
    *,
    name: str,
) -> dict[str, Any]:
    """Run ``options.steps`` rounds of ``prune_round(index)`` (+ fine-tuning) on ``tm`` in place.

    ``prune_round`` must work on ``tm.module`` as it is when called (a restore replaces it).
    Returns the per-round history and whether the bound stopped it early.
    """
    from engine.training import evaluate, fit

    dataset = ctx.dataset
    if options.max_metric_drop is not None:
        dataset = ctx.require_dataset(f"{name}: max_metric_drop is measured on a validation split")
    finetune = dataset is not None and options.finetune_epochs > 0
    validation = (
        dataset.split(options.validation_fraction, ctx.seed)[1] if dataset is not None else None
    )

    baseline: float | None = None
    metric_name = None
    if validation is not None:
        metric_name, baseline = evaluate(tm, ctx, validation, max_length=options.max_length)
    history: list[dict[str, Any]] = []
    stopped_early = False
    last_good = copy.deepcopy(tm.module) if options.max_metric_drop is not None else None
    for index in range(options.steps):
        ctx.check_cancel()
        row: dict[str, Any] = {"round": index + 1, **prune_round(index)}
        if finetune:
            # fit measures the same metric on the same split (same fraction and seed): epoch 0 is
            # the pruned model before training, and it keeps the best epoch's weights.
            result = fit(tm, ctx, _train_config(options), name=f"{name}-round{index + 1}")
            row["metric_before_finetune"] = result.history[0]["metric"]
            metric_name, row["metric"] = result.metric_name, result.best_metric
            row["finetune"] = result.summary()
        elif validation is not None:
            metric_name, row["metric"] = evaluate(
                tm, ctx, validation, max_length=options.max_length
            )
        history.append(row)
        ctx.event(
            f"{name}.round", **{k: v for k, v in row.items() if not isinstance(v, dict | list)}
        )
        ctx.progress((index + 1) / options.steps, f"{name}: round {index + 1}/{options.steps}")
        if options.max_metric_drop is not None and baseline is not None:
            if baseline - row["metric"] > options.max_metric_drop:
                assert last_good is not None
                tm.module = last_good
                stopped_early = True
                row["accepted"] = False
                ctx.event(
                    f"{name}.stopped", round=index + 1, metric=row["metric"], baseline=baseline
                )
                break
            row["accepted"] = True
            last_good = copy.deepcopy(tm.module)
    return {
        "metric": metric_name,
        "metric_unpruned": baseline,
        "rounds": history,
        "rounds_accepted": sum(1 for r in history if r.get("accepted", True)),
        "stopped_early": stopped_early,
        "finetuned": finetune,
    }
