"""Per-epoch checkpoints: a job delivered again after its worker died resumes from the last
finished epoch instead of starting over.

Each run keeps ``last.pt`` (model, optimizer, scheduler, RNG and ``Progress`` after the last
finished epoch) and ``best.pt`` (the best weights so far) in its own folder. A fingerprint of the
run's options and model shapes guards the resume, so a checkpoint left by another recipe is never
loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.context import PassContext
from engine.distillation.losses import DistillOptions
from engine.training.config import TrainConfig

if TYPE_CHECKING:
    from engine.formats.torch_model import TorchModel


@dataclass
class Progress:
    """Where a run stands after its last finished epoch (epoch 0: the evaluation before training)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    # The first epoch still to train.
    start_epoch: int = 1
    step: int = 0
    bad_epochs: int = 0
    finished: bool = False
    metric_name: str = ""
    best_metric: float = -math.inf
    best_epoch: int = 0
    best_state: dict[str, Any] | None = None
    # The first epoch trained after loading a checkpoint; None when the run started from scratch.
    resumed_from: int | None = None


def fingerprint(
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


def checkpoint_folder(ctx: PassContext, name: str) -> Path | None:
    """This run's folder under ``ctx.checkpoint_dir`` (created); None when checkpoints are off."""
    if ctx.checkpoint_dir is None:
        return None
    # One job may train in several steps; each step's work folder name is unique in its recipe.
    folder = Path(ctx.checkpoint_dir) / f"{ctx.work_dir.name}-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file: a worker killed mid-write leaves the old file."""
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def cpu_state(module: Any) -> dict[str, Any]:
    """A copy of the module's weights on the CPU (kept while training changes the originals)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def save_best(folder: Path, state: dict[str, Any]) -> None:
    save_atomic({"model": state}, folder / "best.pt")


def save_last(
    folder: Path,
    run_fingerprint: str,
    epoch: int,
    student: TorchModel,
    optimizer: Any,
    scheduler: Any,
    progress: Progress,
) -> None:
    """Everything a resumed run needs to continue after ``epoch`` as if it had not stopped."""
    import torch

    save_atomic(
        {
            "fingerprint": run_fingerprint,
            "model": cpu_state(student.module),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "history": progress.history,
            "epoch": epoch,
            "step": progress.step,
            "bad_epochs": progress.bad_epochs,
            "finished": progress.finished,
            "metric_name": progress.metric_name,
            "best_metric": progress.best_metric,
            "best_epoch": progress.best_epoch,
        },
        folder / "last.pt",
    )


def resume(
    folder: Path, run_fingerprint: str, student: TorchModel, optimizer: Any, scheduler: Any
) -> Progress | None:
    """Loads ``last.pt`` into the student, optimizer, scheduler and torch's RNG when it belongs
    to this run; returns its progress, or None to start from scratch."""
    import torch

    last = folder / "last.pt"
    if not last.is_file():
        return None
    state = torch.load(last, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != run_fingerprint:
        return None
    student.module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    start_epoch = int(state["epoch"]) + 1
    best = torch.load(folder / "best.pt", map_location="cpu", weights_only=True)
    return Progress(
        history=list(state["history"]),
        start_epoch=start_epoch,
        step=int(state["step"]),
        bad_epochs=int(state["bad_epochs"]),
        finished=bool(state["finished"]),
        metric_name=state["metric_name"],
        best_metric=float(state["best_metric"]),
        best_epoch=int(state["best_epoch"]),
        best_state=best["model"],
        resumed_from=start_epoch,
    )
