"""Losses of the shared training loop: cross-entropy, Hinton distillation, embedding matching,
hidden-state matching; and the cosine the loop validates embedding students with.

Distillation on logits is Hinton et al.'s KL between temperature-softened distributions times
T^2 (which keeps the soft term's gradient scale independent of T); on embeddings (token outputs
such as ``last_hidden_state``) it is cosine on the mean-pooled sentence embedding plus cosine and
relative MSE per token, so both the direction and the scale of the teacher's outputs are learned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from torch import Tensor

    from engine.formats.torch_model import TorchModel

OutputKind = Literal["auto", "logits", "embeddings"]


@dataclass(frozen=True)
class DistillOptions:
    """How the student is pulled toward the teacher (``fit(**distill_options)``)."""

    # Weight of the soft (teacher) term against the hard-label cross-entropy when labels exist.
    alpha: float = 0.5
    temperature: float = 2.0
    # Weight of hidden-state matching (transformers only); 0 turns it off.
    hidden_weight: float = 0.0
    # Student layer i (1-based) matches teacher layer layer_map[i-1]; default: evenly spaced.
    layer_map: tuple[int, ...] | None = None
    # "auto": a 2-D output is logits, anything else embeddings.
    output_kind: OutputKind = "auto"

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha must be within [0, 1]")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
        if self.layer_map is not None:
            object.__setattr__(self, "layer_map", tuple(int(i) for i in self.layer_map))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Outputs:
    primary: Tensor
    hidden_states: tuple[Tensor, ...] | None = None


def _forward(tm: TorchModel, feeds: dict[str, Tensor], hidden: bool) -> Outputs:
    if hidden and tm.kind == "hf":
        inputs = {k: v for k, v in feeds.items() if k in tm.input_names}
        out = tm.module(**inputs, output_hidden_states=True, return_dict=True)
        primary = out["logits"] if "logits" in out else out["last_hidden_state"]
        return Outputs(primary, tuple(out["hidden_states"]))
    return Outputs(tm.forward(feeds))


def run_teacher(teacher: TorchModel, feeds: dict[str, Tensor], options: DistillOptions) -> Outputs:
    """The teacher's outputs for one batch (the caller holds ``torch.no_grad``)."""
    return _forward(teacher, feeds, options.hidden_weight > 0)


def _is_logits(out: Tensor, options: DistillOptions) -> bool:
    if options.output_kind == "auto":
        return out.dim() == 2
    return options.output_kind == "logits"


def soft_target_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student) on softened distributions, times T^2 (Hinton et al. 2015)."""
    import torch.nn.functional as F

    t = temperature
    return F.kl_div(
        F.log_softmax(student / t, dim=-1),
        F.log_softmax(teacher / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)


def _token_mask(out: Tensor, mask: Tensor | None) -> Tensor:
    import torch

    if mask is None or out.dim() != 3:
        return torch.ones(out.shape[:-1], device=out.device, dtype=out.dtype)
    return mask.to(out.dtype)


def pooled(out: Tensor, mask: Tensor | None) -> Tensor:
    """Per-row vectors: masked mean over tokens for [batch, tokens, hidden], else flattened rows."""
    if out.dim() == 3:
        m = _token_mask(out, mask).unsqueeze(-1)
        return (out * m).sum(1) / m.sum(1).clamp_min(1.0)
    return out.reshape(out.shape[0], -1)


def output_cosine(out: Tensor, ref: Tensor, mask: Tensor | None) -> Tensor:
    """Cosine per row between a model's and its reference's outputs (sentence embeddings for
    token outputs, which is what a sentence-transformer's users compare)."""
    import torch.nn.functional as F

    return F.cosine_similarity(pooled(out.float(), mask), pooled(ref.float(), mask), dim=-1)


def embedding_loss(out: Tensor, ref: Tensor, mask: Tensor | None) -> Tensor:
    import torch.nn.functional as F

    out, ref = out.float(), ref.float()
    loss = (1.0 - output_cosine(out, ref, mask)).mean()
    if out.dim() == 3:
        m = _token_mask(out, mask)
        tokens = m.sum().clamp_min(1.0)
        loss = loss + ((1.0 - F.cosine_similarity(out, ref, dim=-1)) * m).sum() / tokens
        # Relative MSE: scale-free, so one weight suits any hidden size or activation range.
        sq = ((out - ref) ** 2).mean(-1)
        loss = loss + (sq * m).sum() / tokens / ((ref**2).mean(-1) * m).sum().div(tokens).clamp_min(
            1e-6
        )
    else:
        loss = loss + F.mse_loss(out, ref) / (ref**2).mean().clamp_min(1e-6)
    return loss


def default_layer_map(student_layers: int, teacher_layers: int) -> tuple[int, ...]:
    """Student layer i matches teacher layer round(i * L_t / L_s): the last matches the last."""
    return tuple(round((i + 1) * teacher_layers / student_layers) for i in range(student_layers))


def hidden_state_loss(
    student: Outputs, teacher: Outputs, mask: Tensor | None, options: DistillOptions
) -> Tensor:
    assert student.hidden_states is not None and teacher.hidden_states is not None
    s_layers, t_layers = len(student.hidden_states) - 1, len(teacher.hidden_states) - 1
    mapping = options.layer_map or default_layer_map(s_layers, t_layers)
    if len(mapping) != s_layers or max(mapping) > t_layers:
        raise ValueError(f"layer_map needs {s_layers} teacher layer indices within 1..{t_layers}")
    total = student.hidden_states[0].new_zeros(())
    for i, j in enumerate(mapping, start=1):
        s, t = student.hidden_states[i].float(), teacher.hidden_states[j].float()
        if s.shape != t.shape:
            raise ValueError(
                "hidden-state matching needs the same hidden size in student and teacher"
            )
        m = _token_mask(s, mask)
        sq = ((s - t) ** 2).mean(-1)
        total = total + (sq * m).sum() / ((t**2).mean(-1) * m).sum().clamp_min(1e-6)
    return total / len(mapping)


def training_loss(
    student: TorchModel,
    feeds: dict[str, Tensor],
    labels: Tensor | None,
    teacher: Outputs | None,
    mode: Literal["labels", "distill"],
    options: DistillOptions,
) -> Tensor:
    import torch.nn.functional as F

    # The teacher whose hidden states the student also matches; None when that term is off.
    hidden_teacher = (
        teacher
        if options.hidden_weight > 0 and teacher is not None and teacher.hidden_states is not None
        else None
    )
    out = _forward(student, feeds, hidden_teacher is not None)
    logits = out.primary.float()
    mask = feeds.get("attention_mask")
    if mode == "labels":
        assert labels is not None
        loss = F.cross_entropy(logits, labels.long())
        if teacher is not None and options.alpha > 0:
            soft = soft_target_loss(logits, teacher.primary.float(), options.temperature)
            loss = options.alpha * soft + (1.0 - options.alpha) * loss
    else:
        assert teacher is not None
        if _is_logits(logits, options):
            loss = soft_target_loss(logits, teacher.primary.float(), options.temperature)
        else:
            loss = embedding_loss(logits, teacher.primary, mask)
    if hidden_teacher is not None:
        loss = loss + options.hidden_weight * hidden_state_loss(out, hidden_teacher, mask, options)
    return loss
