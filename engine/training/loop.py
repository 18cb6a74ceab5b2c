"""``fit``: the one training loop, in named steps (split the data, make the teacher ready, resume
or evaluate epoch 0, train and checkpoint each epoch, restore the best weights)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.context import PassContext
from engine.data import Dataset
from engine.distillation.losses import DistillOptions, training_loss
from engine.distillation.teacher_cache import TeacherCache
from engine.training import optim
from engine.training.batching import check_feedable, indexed_batches
from engine.training.checkpoint import (
    Progress,
    checkpoint_folder,
    cpu_state,
    fingerprint,
    resume,
    save_best,
    save_last,
)
from engine.training.config import DEFAULT_LR, Objective, TrainConfig
from engine.training.evaluation import evaluate
from engine.training.objective import (
    Mode,
    check_hidden_matching,
    needs_teacher,
    ready_teacher,
    resolve_objective,
    teacher_cache,
)

if TYPE_CHECKING:
    from torch import Tensor

    from engine.formats.torch_model import TorchModel


@dataclass
class FitResult:
    """What a training run did. ``history`` has one row per epoch (epoch 0: before training)."""

    history: list[dict[str, Any]]
    best_metric: float
    metric_name: str
    train_rows: int
    validation_rows: int
    # The first epoch this call trained after loading a checkpoint (2: epoch 1 came from the
    # checkpoint); None when the run started from scratch.
    resumed_from_epoch: int | None = None
    best_epoch: int = 0
    lr: float = 0.0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "metric": self.metric_name,
            "best_metric": round(self.best_metric, 6),
            "best_epoch": self.best_epoch,
            "epochs_run": max((h["epoch"] for h in self.history), default=0),
            "train_rows": self.train_rows,
            "validation_rows": self.validation_rows,
            "lr": self.lr,
            "resumed_from_epoch": self.resumed_from_epoch,
            "seconds": round(self.seconds, 2),
        }


@dataclass
class _Run:
    """What stays fixed while one ``fit`` call trains."""

    student: TorchModel
    ctx: PassContext
    config: TrainConfig
    name: str
    mode: Mode
    options: DistillOptions
    train: Dataset
    validation: Dataset
    teacher: TorchModel | None
    cache: TeacherCache | None
    lr: float
    optimizer: Any
    scheduler: Any
    params: list[Any]
    autocast: Callable[[], Any]
    scaler: Any
    total_steps: int
    folder: Path | None
    fingerprint: str


def fit(
    student: TorchModel,
    ctx: PassContext,
    config: TrainConfig,
    *,
    teacher: TorchModel | None = None,
    objective: Objective = "auto",
    name: str = "finetune",
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    **distill_options: Any,
) -> FitResult:
    """Train ``student`` in place on ``ctx.dataset``; returns what happened.

    ``objective`` "labels": cross-entropy on class labels (plus the distillation term when a
    teacher is given and ``alpha`` > 0); "distill": match the teacher (default: the original)
    only; "auto": labels when the dataset has class labels and the model outputs logits.
    ``distill_options`` are the fields of ``DistillOptions`` (alpha, temperature, ...).
    ``on_epoch_end`` is called with each epoch's history row after its checkpoint is saved.
    """
    started = time.perf_counter()
    run, dropout_rates = _prepare(
        student, ctx, config, teacher, objective, name, DistillOptions(**distill_options)
    )
    progress = _start(run)
    for epoch in range(progress.start_epoch, config.epochs + 1):
        if progress.finished or (config.max_steps is not None and progress.step >= run.total_steps):
            break
        row = _end_epoch(run, progress, epoch, _train_epoch(run, progress, epoch))
        if on_epoch_end is not None:
            on_epoch_end(row)
        if progress.bad_epochs >= config.patience:
            ctx.event("train.early_stop", training=name, epoch=epoch, best_epoch=progress.best_epoch)
            break
    return _finish(run, progress, dropout_rates, started)


def _split(
    ctx: PassContext, student: TorchModel, config: TrainConfig, name: str
) -> tuple[Dataset, Dataset]:
    """The job's dataset split into training and validation rows (reported)."""
    dataset = ctx.require_dataset(f"{name} trains on data")
    check_feedable(dataset, student)
    train, validation = dataset.split(config.validation_fraction, ctx.seed)
    if len(validation) == 0:
        validation = train  # one row: nothing to hold out
    ctx.add_report_section(
        "data_split",
        {
            "rows": len(dataset),
            "train_rows": len(train),
            "validation_rows": len(validation),
            "validation_fraction": config.validation_fraction,
            "seed": ctx.seed,
        },
    )
    return train, validation


def _prepare(
    student: TorchModel,
    ctx: PassContext,
    config: TrainConfig,
    teacher: TorchModel | None,
    objective: Objective,
    name: str,
    options: DistillOptions,
) -> tuple[_Run, list[tuple[Any, float]]]:
    """Everything the epochs need; also the dropout rates to put back afterwards."""
    import torch

    train, validation = _split(ctx, student, config, name)
    torch.manual_seed(ctx.seed)
    student.trainable()
    student.module.to(ctx.device)
    mode, teacher, cache = _objective(student, ctx, config, train, teacher, objective, options)
    dropout_rates = [] if config.dropout else optim.dropout_off(student.module)

    lr = config.lr or DEFAULT_LR[student.kind]
    optimizer, params = optim.adamw(student, config, lr)
    steps = optim.total_steps(len(train), config)
    autocast, scaler = optim.autocast(ctx, config)
    run = _Run(
        student=student,
        ctx=ctx,
        config=config,
        name=name,
        mode=mode,
        options=options,
        train=train,
        validation=validation,
        teacher=teacher,
        cache=cache,
        lr=lr,
        optimizer=optimizer,
        scheduler=optim.scheduler(optimizer, steps, config),
        params=params,
        autocast=autocast,
        scaler=scaler,
        total_steps=steps,
        folder=checkpoint_folder(ctx, name),
        fingerprint=fingerprint(student, config, name, mode, options),
    )
    return run, dropout_rates


def _objective(
    student: TorchModel,
    ctx: PassContext,
    config: TrainConfig,
    train: Dataset,
    teacher: TorchModel | None,
    objective: Objective,
    options: DistillOptions,
) -> tuple[Mode, TorchModel | None, TeacherCache | None]:
    """The loss's mode, the teacher made ready, and the cache of its outputs when the loss reads
    them."""
    mode = resolve_objective(objective, train, student)
    wanted = needs_teacher(mode, teacher, options)
    teacher = ready_teacher(teacher, ctx, wanted)
    check_hidden_matching(student, teacher, options)
    cache = None
    if teacher is not None and wanted:
        cache = teacher_cache(
            student, teacher, options, text=train.texts is not None, epochs=config.epochs
        )
    return mode, teacher, cache


def _metric(run: _Run) -> tuple[str, float]:
    return evaluate(
        run.student,
        run.ctx,
        run.validation,
        teacher=run.teacher,
        max_length=run.config.max_length,
        prefer="labels" if run.mode == "labels" else "teacher",
    )


def _start(run: _Run) -> Progress:
    """The progress of the run's last checkpoint, or a fresh one after evaluating epoch 0."""
    if run.folder is not None:
        resumed = resume(run.folder, run.fingerprint, run.student, run.optimizer, run.scheduler)
        if resumed is not None:
            run.ctx.event(
                "train.resumed", training=run.name, epoch=resumed.start_epoch, step=resumed.step
            )
            return resumed
    progress = Progress()
    progress.metric_name, progress.best_metric = _metric(run)
    progress.best_state = cpu_state(run.student.module)
    if run.folder is not None:
        # Also replaces a best.pt that a run with another fingerprint left behind.
        save_best(run.folder, progress.best_state)
    progress.history.append({"epoch": 0, "step": 0, "loss": None, "metric": progress.best_metric})
    run.ctx.event(
        "train.epoch", training=run.name, epoch=0, step=0, loss=None, metric=progress.best_metric
    )
    return progress


def _train_epoch(run: _Run, progress: Progress, epoch: int) -> float:
    """One pass over the shuffled training rows (or up to the step cap); returns the mean loss
    per row."""
    import torch

    run.student.module.train()
    loss_sum, loss_rows = 0.0, 0
    for row_index, feeds, labels in indexed_batches(
        run.train,
        run.student,
        run.config.batch_size,
        shuffle=True,
        seed=run.ctx.seed * 1000 + epoch,
        max_length=run.config.max_length,
        device=run.ctx.device,
    ):
        run.ctx.check_cancel()
        with torch.no_grad():
            teacher_out = run.cache.outputs(row_index, feeds) if run.cache is not None else None
        with run.autocast():
            loss = training_loss(run.student, feeds, labels, teacher_out, run.mode, run.options)
        _optimizer_step(run, loss)
        progress.step += 1
        rows = len(next(iter(feeds.values())))
        loss_sum += float(loss.detach()) * rows
        loss_rows += rows
        if progress.step % 10 == 0 or progress.step == run.total_steps:
            run.ctx.progress(
                progress.step / max(1, run.total_steps),
                f"{run.name}: epoch {epoch}, step {progress.step}/{run.total_steps}",
            )
        if progress.step >= run.total_steps:
            break
    return loss_sum / max(1, loss_rows)


def _optimizer_step(run: _Run, loss: Tensor) -> None:
    import torch

    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.params, run.config.max_grad_norm)
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.params, run.config.max_grad_norm)
        run.optimizer.step()
    run.scheduler.step()


def _end_epoch(run: _Run, progress: Progress, epoch: int, loss: float) -> dict[str, Any]:
    """Validates, keeps the best weights, saves the checkpoint; returns the epoch's history row."""
    progress.metric_name, value = _metric(run)
    row = {"epoch": epoch, "step": progress.step, "loss": loss, "metric": value}
    progress.history.append(row)
    run.ctx.event(
        "train.epoch", training=run.name, epoch=epoch, step=progress.step, loss=loss, metric=value
    )
    if value > progress.best_metric + 1e-6:
        progress.best_metric, progress.best_epoch, progress.bad_epochs = value, epoch, 0
        progress.best_state = cpu_state(run.student.module)
        if run.folder is not None:
            save_best(run.folder, progress.best_state)
    else:
        progress.bad_epochs += 1
    progress.finished = (
        progress.bad_epochs >= run.config.patience
        or progress.step >= run.total_steps
        or epoch == run.config.epochs
    )
    if run.folder is not None:
        save_last(
            run.folder, run.fingerprint, epoch, run.student, run.optimizer, run.scheduler, progress
        )
    return row


def _finish(
    run: _Run, progress: Progress, dropout_rates: list[tuple[Any, float]], started: float
) -> FitResult:
    """Restores the best weights and the dropout rates; records the run's summary."""
    if progress.best_state is not None:
        run.student.module.load_state_dict(progress.best_state)
    for layer, rate in dropout_rates:
        layer.p = rate
    run.student.module.eval()
    result = FitResult(
        history=progress.history,
        best_metric=progress.best_metric,
        metric_name=progress.metric_name,
        train_rows=len(run.train),
        validation_rows=len(run.validation),
        resumed_from_epoch=progress.resumed_from,
        best_epoch=progress.best_epoch,
        lr=run.lr,
        seconds=time.perf_counter() - started,
    )
    run.ctx.resolved[run.name] = result.summary()
    return result
