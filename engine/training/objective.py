"""What a run learns from: class labels, the teacher, or both; and the teacher made ready."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from engine.context import PassContext
from engine.data import Dataset
from engine.distillation.losses import DistillOptions, default_layer_map
from engine.distillation.teacher_cache import CACHE_BYTES, TeacherCache
from engine.errors import DatasetInvalid
from engine.training.batching import has_class_labels
from engine.training.config import Objective
from engine.training.evaluation import load_original

if TYPE_CHECKING:
    from engine.formats.torch_model import TorchModel

Mode = Literal["labels", "distill"]


def resolve_objective(objective: Objective, train: Dataset, student: TorchModel) -> Mode:
    """The loss a run uses: "auto" is labels when ``train`` has class labels and the student
    outputs logits, else distillation; "labels" without class labels is refused."""
    if objective == "labels":
        if not has_class_labels(train):
            raise DatasetInvalid(
                "training on labels needs integer class labels (the dataset's 'labels' / 'label'); "
                "without labels use distillation"
            )
        return "labels"
    if objective == "distill":
        return "distill"
    return "labels" if has_class_labels(train) and _logits_output(student) else "distill"


def _logits_output(tm: TorchModel) -> bool:
    """Whether the primary output is [batch, classes] logits (asked of the model, not guessed)."""
    import torch

    with torch.no_grad():
        feeds = {k: v.to(_device_of(tm)) for k, v in tm.example_feeds(batch=2, seq_len=8).items()}
        tm.module.eval()
        return tm.forward(feeds).dim() == 2


def _device_of(tm: TorchModel) -> Any:
    import torch

    for p in tm.module.parameters():
        return p.device
    return torch.device("cpu")


def needs_teacher(mode: Mode, teacher: TorchModel | None, options: DistillOptions) -> bool:
    """Whether the loss reads a teacher: always when distilling, with labels when one is given
    and its term weighs anything."""
    return mode == "distill" or (teacher is not None and options.alpha > 0)


def ready_teacher(
    teacher: TorchModel | None, ctx: PassContext, needed: bool
) -> TorchModel | None:
    """The teacher (the uploaded model when one is needed and none was given) on the job's
    device, in eval mode and frozen."""
    if needed and teacher is None:
        teacher = load_original(ctx)
    if teacher is not None:
        teacher.module.to(ctx.device).eval()
        for p in teacher.module.parameters():
            p.requires_grad_(False)
    return teacher


def check_hidden_matching(
    student: TorchModel, teacher: TorchModel | None, options: DistillOptions
) -> None:
    if options.hidden_weight > 0 and not (
        student.kind == "hf" and teacher is not None and teacher.kind == "hf"
    ):
        raise DatasetInvalid(
            "matching hidden states needs a transformers teacher and student (HF checkpoints)"
        )


def teacher_cache(
    student: TorchModel, teacher: TorchModel, options: DistillOptions, *, text: bool, epochs: int
) -> TeacherCache:
    """The cache of the teacher's outputs per training row, holding only the hidden layers the
    loss reads."""
    hidden_layers = None
    if options.hidden_weight > 0:
        hidden_layers = options.layer_map or default_layer_map(
            student.module.config.num_hidden_layers, teacher.module.config.num_hidden_layers
        )
    return TeacherCache(
        teacher,
        options,
        hidden_layers=hidden_layers,
        text=text,
        # One epoch never reuses a row: the cache then only costs memory.
        budget_bytes=CACHE_BYTES if epochs > 1 else 0,
    )
