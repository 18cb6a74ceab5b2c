"""The one training loop every pass that needs recovery uses (fine-tuning, distillation, low-rank).

AdamW, linear warm-up then cosine (or linear) decay, gradient clipping, early stopping on the
validation metric (the best weights are restored), fixed seeds, a deterministic train/validation
split. Each epoch's state is saved under ``ctx.checkpoint_dir``; a job delivered again after its
worker died resumes from the last finished epoch instead of starting over.

The objective follows the data: with labels and logits it is cross-entropy (plus a distillation
term when a teacher is given); without labels the student learns to match the teacher (or the
uploaded original) -- KL on logits, cosine + MSE on embeddings. Losses live in
``engine.distillation.losses``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from engine.context import PassContext
from engine.data import Dataset
from engine.distillation.losses import DistillOptions
from engine.distillation.teacher_cache import CACHE_BYTES, TeacherCache
from engine.errors import DatasetInvalid, DatasetMismatch
from engine.registry import PassConfig

if TYPE_CHECKING:
    from torch import Tensor

    from engine.formats.torch_model import TorchModel

Objective = Literal["auto", "labels", "distill"]
EVAL_BATCH = 64

# Transformers are pre-trained: a small step keeps what they know. Graphs converted from ONNX
# (CNNs and the like) are usually small and recover quickly at the usual Adam rate.
DEFAULT_LR = {"hf": 5e-5, "fx": 1e-3}


class TrainConfig(PassConfig):
    """Training options shared by finetune, distill and the low-rank passes' recovery."""

    epochs: int = Field(3, ge=1, le=1000, description="passes over the training rows")
    lr: float | None = Field(
        None,
        gt=0,
        le=1.0,
        description="peak AdamW learning rate; default 1e-3 for ONNX-origin graphs, 5e-5 for transformers",
    )
    batch_size: int = Field(32, ge=1, le=4096, description="rows per optimizer step")
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
    validation_fraction: float = Field(
        0.1, ge=0.01, le=0.5, description="share of the dataset held out (split by the job's seed)"
    )
    max_steps: int | None = Field(
        None, ge=1, le=10_000_000, description="cap on optimizer steps (all epochs)"
    )
    max_length: int = Field(
        64, ge=8, le=4096, description="tokens per text row (text datasets only)"
    )
    mixed_precision: bool = Field(
        True, description="autocast (bfloat16, else float16) when running on CUDA"
    )
    dropout: bool = Field(
        True,
        description="keep the model's dropout layers active while training; false sets them to 0 for this run",
    )


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


# --------------------------------------------------------------------------------------------
# Batches


@lru_cache(maxsize=4)
def _tokenizer(folder: str) -> Any:
    from engine.formats import hf

    return hf.load_tokenizer(Path(folder))


def _check_feedable(dataset: Dataset, tm: TorchModel) -> None:
    if dataset.texts is not None:
        if tm.kind != "hf":
            raise DatasetMismatch(
                "a text dataset needs a Hugging Face checkpoint with its tokenizer; for an ONNX model "
                "send an .npz with one array per model input"
            )
        return
    missing = [n for n in tm.input_names if n not in dataset.arrays]
    if tm.kind == "hf":
        missing = [n for n in missing if n != "token_type_ids"]  # optional for BERT-like models
    if missing:
        raise DatasetMismatch(
            f"the dataset lacks arrays for the model inputs {missing}",
            detail={"missing": missing, "dataset_arrays": sorted(dataset.arrays)},
        )


# Shuffled text rows are sorted by length within groups of this many batches (the Hugging Face
# Trainer's group_by_length): a batch is padded to its longest row, and random batches of 32
# docstring sentences ran 1.71x their real tokens, grouped ones 1.03x. The groups and the batch
# order stay random.
LENGTH_GROUP_BATCHES = 50


def batch_rows(
    rows: int, batch_size: int, *, shuffle: bool, seed: int, lengths: np.ndarray | None = None
) -> list[np.ndarray]:
    """Row indices of each batch: in order, shuffled, or (with ``lengths``) shuffled and grouped
    by length."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows) if shuffle else np.arange(rows)
    if not shuffle or lengths is None:
        return [order[start : start + batch_size] for start in range(0, rows, batch_size)]
    group = batch_size * LENGTH_GROUP_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, rows, group):
        chunk = order[start : start + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _token_lengths(dataset: Dataset, tm: TorchModel, max_length: int) -> np.ndarray:
    assert dataset.texts is not None
    encoded = _tokenizer(str(tm.source.path))(dataset.texts, truncation=True, max_length=max_length)
    return np.array([len(ids) for ids in encoded["input_ids"]])


def indexed_batches(
    dataset: Dataset,
    tm: TorchModel,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    max_length: int = 64,
    device: str = "cpu",
) -> Iterator[tuple[np.ndarray, dict[str, Tensor], Tensor | None]]:
    """Row indices, named input tensors and labels for ``tm``, ``batch_size`` rows at a time.

    Text rows are tokenized with the checkpoint's own tokenizer, padded to the longest row of the
    batch and cut at ``max_length`` (shuffled text rows are grouped by length, see
    ``LENGTH_GROUP_BATCHES``); arrays are cast to the model's input dtypes.
    """
    import torch

    _check_feedable(dataset, tm)
    lengths = (
        _token_lengths(dataset, tm, max_length) if shuffle and dataset.texts is not None else None
    )
    dtypes = {spec["name"]: spec.get("dtype", "float32") for spec in tm.inputs}
    for rows in batch_rows(len(dataset), batch_size, shuffle=shuffle, seed=seed, lengths=lengths):
        feeds: dict[str, Tensor] = {}
        if dataset.texts is not None:
            tokenizer = _tokenizer(str(tm.source.path))
            encoded = tokenizer(
                [dataset.texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            feeds = {k: v for k, v in encoded.items() if k in tm.input_names}
        else:
            for name in tm.input_names:
                if name not in dataset.arrays:
                    continue
                arr = dataset.arrays[name][rows].astype(np.dtype(dtypes[name]), copy=False)
                feeds[name] = torch.from_numpy(np.ascontiguousarray(arr))
        feeds = {k: v.to(device) for k, v in feeds.items()}
        labels = None
        if dataset.labels is not None:
            labels = torch.from_numpy(np.ascontiguousarray(dataset.labels[rows])).to(device)
        yield rows, feeds, labels


def torch_batches(
    dataset: Dataset, tm: TorchModel, batch_size: int, **options: Any
) -> Iterator[tuple[dict[str, Tensor], Tensor | None]]:
    """``indexed_batches`` without the row indices: (feeds, labels) per batch."""
    for _, feeds, labels in indexed_batches(dataset, tm, batch_size, **options):
        yield feeds, labels


# --------------------------------------------------------------------------------------------
# Metrics


def _has_class_labels(dataset: Dataset) -> bool:
    return (
        dataset.labels is not None
        and dataset.labels.dtype.kind in "iub"
        and dataset.labels.ndim == 1
    )


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

    from engine.distillation import losses as distill_losses

    tm.module.eval()
    use_labels = prefer != "teacher" and _has_class_labels(rows)
    if rows.texts is not None:
        # The metric is a mean over rows, so their order is free: sorted by length, batches carry
        # almost no padding (docstring sentences in batches of 64: 1.87x the real tokens in
        # random order, 1.01x sorted).
        _check_feedable(rows, tm)
        rows = rows.take(np.argsort(_token_lengths(rows, tm, max_length), kind="stable"))
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
                teacher_tm = teacher or _load_original(ctx)
            ref = teacher_tm.forward(feeds).float()
            cos = distill_losses.output_cosine(out, ref, feeds.get("attention_mask"))
            cos_sum += float(cos.sum())
            total += len(cos)
    if total == 0:
        return ("accuracy" if use_labels else "cosine_to_teacher"), 0.0
    if use_labels:
        return "accuracy", correct / total
    return "cosine_to_teacher", cos_sum / total


@lru_cache(maxsize=2)
def _load_original_cached(path: str, fmt: str, device: str) -> TorchModel:
    from engine.formats.torch_model import load_torch
    from engine.model import ModelFile

    tm = load_torch(ModelFile(Path(path), fmt))  # type: ignore[arg-type]
    tm.module.to(device).eval()
    for p in tm.module.parameters():
        p.requires_grad_(False)
    return tm


def _load_original(ctx: PassContext) -> TorchModel:
    """The uploaded model as the default teacher / reference (loaded once per process)."""
    return _load_original_cached(str(ctx.original.path), ctx.original.format, ctx.device)


# --------------------------------------------------------------------------------------------
# Checkpoints


def _fingerprint(
    tm: TorchModel, config: TrainConfig, name: str, objective: str, options: DistillOptions
) -> str:
    """Identifies one training run, so a checkpoint left by another recipe is never resumed."""
    shapes = sorted((k, tuple(v.shape)) for k, v in tm.module.state_dict().items())
    text = json.dumps(
        [name, objective, config.model_dump(mode="json"), options.as_dict(), shapes],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _checkpoint_folder(ctx: PassContext, name: str) -> Path | None:
    if ctx.checkpoint_dir is None:
        return None
    # One job may train in several steps; each step's work folder name is unique in its recipe.
    folder = Path(ctx.checkpoint_dir) / f"{ctx.work_dir.name}-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _cpu_state(module: Any) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------------
# The loop


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


def _autocast(ctx: PassContext, config: TrainConfig) -> tuple[Any, Any]:
    """The autocast context and a GradScaler (float16 only) for this device."""
    import contextlib

    import torch

    if not (config.mixed_precision and ctx.device.startswith("cuda") and torch.cuda.is_available()):
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def resolve_objective(
    objective: Objective, train: Dataset, student: TorchModel
) -> Literal["labels", "distill"]:
    if objective == "labels":
        if not _has_class_labels(train):
            raise DatasetInvalid(
                "training on labels needs integer class labels (the dataset's 'labels' / 'label'); "
                "without labels use distillation"
            )
        return "labels"
    if objective == "distill":
        return "distill"
    return "labels" if _has_class_labels(train) and _logits_output(student) else "distill"


def _logits_output(tm: TorchModel) -> bool:
    """Whether the primary output is [batch, classes] logits (asked of the model, not guessed)."""
    import torch

    with torch.no_grad():
        feeds = {k: v.to(_device_of(tm)) for k, v in tm.example_feeds(batch=2, seq_len=8).items()}
        tm.module.eval()
        return tm.forward(feeds).dim() == 2


def _dropout_off(module: Any) -> list[tuple[Any, float]]:
    """Sets every dropout layer's rate to 0 (transformers' attention dropout reads the same
    layer's ``p``); returns the rates to put back."""
    import torch.nn as nn

    layers = [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    rates = [(m, float(m.p)) for m in layers]
    for m in layers:
        m.p = 0.0
    return rates


def _device_of(tm: TorchModel) -> Any:
    import torch

    for p in tm.module.parameters():
        return p.device
    return torch.device("cpu")


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
    import torch

    from engine.distillation import losses as distill_losses

    started = time.perf_counter()
    options = DistillOptions(**distill_options)
    dataset = ctx.require_dataset(f"{name} trains on data")
    _check_feedable(dataset, student)
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

    device = ctx.device
    torch.manual_seed(ctx.seed)
    student.trainable()
    student.module.to(device)
    mode = resolve_objective(objective, train, student)
    needs_teacher = mode == "distill" or (teacher is not None and options.alpha > 0)
    if needs_teacher and teacher is None:
        teacher = _load_original(ctx)
    if teacher is not None:
        teacher.module.to(device).eval()
        for p in teacher.module.parameters():
            p.requires_grad_(False)
    if options.hidden_weight > 0 and not (
        student.kind == "hf" and teacher is not None and teacher.kind == "hf"
    ):
        raise DatasetInvalid(
            "matching hidden states needs a transformers teacher and student (HF checkpoints)"
        )

    teacher_cache = None
    if teacher is not None and needs_teacher:
        # One epoch never reuses a row: the cache then only costs memory (budget_bytes = 0).
        hidden_layers = None
        if options.hidden_weight > 0:
            hidden_layers = options.layer_map or distill_losses.default_layer_map(
                student.module.config.num_hidden_layers, teacher.module.config.num_hidden_layers
            )
        teacher_cache = TeacherCache(
            teacher,
            options,
            hidden_layers=hidden_layers,
            text=train.texts is not None,
            budget_bytes=CACHE_BYTES if config.epochs > 1 else 0,
        )

    dropout_rates = [] if config.dropout else _dropout_off(student.module)

    lr = config.lr or DEFAULT_LR[student.kind]
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
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    warmup = int(total_steps * config.warmup_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(total_steps, warmup, config.schedule)
    )
    autocast, scaler = _autocast(ctx, config)

    def metric() -> tuple[str, float]:
        return evaluate(
            student,
            ctx,
            validation,
            teacher=teacher,
            max_length=config.max_length,
            prefer="labels" if mode == "labels" else "teacher",
        )

    folder = _checkpoint_folder(ctx, name)
    fingerprint = _fingerprint(student, config, name, mode, options)
    history: list[dict[str, Any]] = []
    start_epoch = 1
    step = 0
    bad_epochs = 0
    finished = False
    resumed_from: int | None = None
    best_state: dict[str, Any] | None = None
    metric_name, best_metric, best_epoch = "", -math.inf, 0

    last = folder / "last.pt" if folder else None
    if last is not None and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=True)
        if state.get("fingerprint") == fingerprint:
            student.module.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            history = list(state["history"])
            start_epoch = int(state["epoch"]) + 1
            step, bad_epochs, finished = (
                int(state["step"]),
                int(state["bad_epochs"]),
                bool(state["finished"]),
            )
            metric_name, best_metric, best_epoch = (
                state["metric_name"],
                float(state["best_metric"]),
                int(state["best_epoch"]),
            )
            best_state = torch.load(folder / "best.pt", map_location="cpu", weights_only=True)[
                "model"
            ]  # type: ignore[operator]
            resumed_from = start_epoch
            ctx.event("train.resumed", training=name, epoch=start_epoch, step=step)

    if not history:
        metric_name, best_metric = metric()
        best_state = _cpu_state(student.module)
        if folder:
            # Also replaces a best.pt that a run with another fingerprint left behind.
            _save_atomic({"model": best_state}, folder / "best.pt")
        history.append({"epoch": 0, "step": 0, "loss": None, "metric": best_metric})
        ctx.event("train.epoch", training=name, epoch=0, step=0, loss=None, metric=best_metric)

    for epoch in range(start_epoch, config.epochs + 1):
        if finished or (config.max_steps is not None and step >= total_steps):
            break
        student.module.train()
        loss_sum, loss_rows = 0.0, 0
        for row_index, feeds, labels in indexed_batches(
            train,
            student,
            config.batch_size,
            shuffle=True,
            seed=ctx.seed * 1000 + epoch,
            max_length=config.max_length,
            device=device,
        ):
            ctx.check_cancel()
            with torch.no_grad():
                teacher_out = teacher_cache.outputs(row_index, feeds) if teacher_cache else None
            with autocast():
                loss = distill_losses.training_loss(
                    student, feeds, labels, teacher_out, mode, options
                )
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
            scheduler.step()
            step += 1
            rows = len(next(iter(feeds.values())))
            loss_sum += float(loss.detach()) * rows
            loss_rows += rows
            if step % 10 == 0 or step == total_steps:
                ctx.progress(
                    step / max(1, total_steps), f"{name}: epoch {epoch}, step {step}/{total_steps}"
                )
            if step >= total_steps:
                break
        metric_name, value = metric()
        row = {"epoch": epoch, "step": step, "loss": loss_sum / max(1, loss_rows), "metric": value}
        history.append(row)
        ctx.event(
            "train.epoch", training=name, epoch=epoch, step=step, loss=row["loss"], metric=value
        )
        if value > best_metric + 1e-6:
            best_metric, best_epoch, bad_epochs = value, epoch, 0
            best_state = _cpu_state(student.module)
            if folder:
                _save_atomic({"model": best_state}, folder / "best.pt")
        else:
            bad_epochs += 1
        finished = bad_epochs >= config.patience or step >= total_steps or epoch == config.epochs
        if folder:
            _save_atomic(
                {
                    "fingerprint": fingerprint,
                    "model": _cpu_state(student.module),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "history": history,
                    "epoch": epoch,
                    "step": step,
                    "bad_epochs": bad_epochs,
                    "finished": finished,
                    "metric_name": metric_name,
                    "best_metric": best_metric,
                    "best_epoch": best_epoch,
                },
                folder / "last.pt",
            )
        if on_epoch_end is not None:
            on_epoch_end(row)
        if bad_epochs >= config.patience:
            ctx.event("train.early_stop", training=name, epoch=epoch, best_epoch=best_epoch)
            break

    if best_state is not None:
        student.module.load_state_dict(best_state)
    for layer, rate in dropout_rates:
        layer.p = rate
    student.module.eval()
    result = FitResult(
        history=history,
        best_metric=best_metric,
        metric_name=metric_name,
        train_rows=len(train),
        validation_rows=len(validation),
        resumed_from_epoch=resumed_from,
        best_epoch=best_epoch,
        lr=lr,
        seconds=time.perf_counter() - started,
    )
    ctx.resolved[name] = result.summary()
    return result
