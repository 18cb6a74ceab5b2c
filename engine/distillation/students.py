"""Smaller students derived from a teacher, initialized from its weights.

- Transformers, fewer layers: keep every k-th block (ending with the last one), as DistilBERT
  initializes its student, or a given number of blocks spread evenly (ending with the last one);
  the config's layer count follows, so the student saves as a plain Hugging Face checkpoint.
- Transformers, narrower FFN, and any CNN, width multiplier: channels are removed with
  torch-pruning's dependency graph, which finds every layer coupled to a removed channel (the next
  layer's inputs, norms, residual adds, gated MLP pairs) instead of a per-architecture rule. The
  channels with the smallest L2 magnitude go, so the student starts close to the teacher.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.errors import PassNotApplicable
from engine.formats.torch_model import TorchModel

StudentKind = Literal["current", "fewer_layers", "narrower_ffn", "width"]


@dataclass
class Student:
    """A student to distill into, and what its derivation chose."""

    model: TorchModel
    # Teacher hidden-state index each student layer matches (hidden_states[0] is the embeddings):
    # the blocks a fewer_layers student kept; None for the other kinds.
    layer_map: tuple[int, ...] | None = None
    # Entries for the job's resolved options (kept layers, intermediate size).
    resolved: dict[str, Any] = field(default_factory=dict)


def derive(
    current: TorchModel,
    kind: StudentKind,
    *,
    keep_every: int,
    ffn_ratio: float,
    width_multiplier: float,
    layers: int | None = None,
) -> Student:
    """The student of ``kind`` derived from ``current`` ("current": ``current`` itself)."""
    if kind == "fewer_layers":
        model, kept = fewer_layers(current, keep_every, layers=layers)
        return Student(model, tuple(i + 1 for i in kept), {"student_layers": kept})
    if kind == "narrower_ffn":
        model = narrower_ffn(current, ffn_ratio)
        return Student(
            model, resolved={"student_intermediate_size": model.module.config.intermediate_size}
        )
    if kind == "width":
        return Student(narrower(current, width_multiplier))
    return Student(current)


def _clone(teacher: TorchModel) -> TorchModel:
    return TorchModel(
        module=copy.deepcopy(teacher.module),
        kind=teacher.kind,
        inputs=teacher.inputs,
        outputs=teacher.outputs,
        source=teacher.source,
    )


def _block_list(module: Any) -> tuple[Any, str]:
    """The ModuleList of transformer blocks: the one as long as config.num_hidden_layers."""
    import torch.nn as nn

    layers = getattr(getattr(module, "config", None), "num_hidden_layers", None)
    for name, sub in module.named_modules():
        if isinstance(sub, nn.ModuleList) and len(sub) == layers:
            return sub, name
    raise PassNotApplicable(
        "fewer layers needs a transformer whose blocks form one list of num_hidden_layers"
    )


def kept_layers(teacher_layers: int, keep_every: int, layers: int | None = None) -> list[int]:
    """0-based teacher blocks the student keeps: every k-th, always including the last; with
    ``layers``, that many spread evenly (the i-th of n ends the i-th n-th of the teacher's depth)."""
    if layers is not None:
        if not 1 <= layers < teacher_layers:
            raise PassNotApplicable(
                f"layers {layers}: the teacher has {teacher_layers} blocks; keep between 1 and {teacher_layers - 1}"
            )
        return [-(-(i + 1) * teacher_layers // layers) - 1 for i in range(layers)]
    kept = list(range(keep_every - 1, teacher_layers, keep_every))
    if not kept or kept[-1] != teacher_layers - 1:
        kept.append(teacher_layers - 1)
    return kept


def fewer_layers(
    teacher: TorchModel, keep_every: int, *, layers: int | None = None
) -> tuple[TorchModel, list[int]]:
    """A student with every ``keep_every``-th block of the teacher (or ``layers`` of them, spread
    evenly); returns the blocks kept."""
    import torch.nn as nn

    if teacher.kind != "hf":
        raise PassNotApplicable(
            "fewer_layers applies to transformers (Hugging Face checkpoints); for CNNs use width"
        )
    student = _clone(teacher)
    blocks, path = _block_list(student.module)
    kept = kept_layers(len(blocks), keep_every, layers)
    new_blocks = nn.ModuleList([blocks[i] for i in kept])
    parent_name, _, child = path.rpartition(".")
    setattr(
        student.module.get_submodule(parent_name) if parent_name else student.module,
        child,
        new_blocks,
    )
    config = student.module.config
    config.num_hidden_layers = len(kept)
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == len(blocks):
        config.layer_types = [layer_types[i] for i in kept]
    for index, block in enumerate(new_blocks):
        # Attention modules that know their index (caches, per-layer types) must learn the new one.
        for sub in block.modules():
            if hasattr(sub, "layer_idx"):
                sub.layer_idx = index
    return student, kept


def _example_inputs(tm: TorchModel) -> Any:
    feeds = tm.example_feeds(batch=2, seq_len=8)
    if tm.kind == "hf":
        return feeds
    return tuple(feeds[n] for n in tm.input_names)


def _output_layers(tm: TorchModel) -> list[Any]:
    """The last Linear/Conv to run: its output channels are the model's outputs (classes,
    embedding size), which a narrower student must keep."""
    import torch
    import torch.nn as nn

    order: list[Any] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
        for m in tm.module.modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
    ]
    try:
        with torch.no_grad():
            tm.forward(tm.example_feeds(batch=2, seq_len=8))
    finally:
        for h in hooks:
            h.remove()
    return order[-1:]


def narrower(teacher: TorchModel, width_multiplier: float) -> TorchModel:
    """A CNN (or any non-transformer module) with ``width_multiplier`` of its channels."""
    import torch_pruning as tp

    if teacher.kind == "hf":
        raise PassNotApplicable("for transformers use fewer_layers or narrower_ffn")
    student = _clone(teacher).trainable()
    student.module.eval()
    pruner = tp.pruner.BasePruner(
        student.module,
        _example_inputs(student),
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=1.0 - width_multiplier,
        ignored_layers=_output_layers(student),
        forward_fn=lambda module, inputs: module(*inputs),
    )
    pruner.step()
    return student


def narrower_ffn(teacher: TorchModel, ffn_ratio: float) -> TorchModel:
    """A transformer whose MLP intermediate size is ``ffn_ratio`` of the teacher's."""
    import torch
    import torch.nn as nn
    import torch_pruning as tp

    if teacher.kind != "hf":
        raise PassNotApplicable("narrower_ffn applies to transformers (Hugging Face checkpoints)")
    student = _clone(teacher)
    module = student.module
    size = getattr(module.config, "intermediate_size", None)
    expanders = [m for m in module.modules() if isinstance(m, nn.Linear) and m.out_features == size]
    if not size or not expanders:
        raise PassNotApplicable(
            "narrower_ffn needs a config with intermediate_size and its MLP Linear layers"
        )
    keep = max(1, int(round(size * ffn_ratio)))
    graph = tp.DependencyGraph().build_dependency(
        module,
        example_inputs=_example_inputs(student),
        forward_fn=lambda m, inputs: m(**inputs, return_dict=False)[0],
    )
    seen: set[int] = set()
    for linear in expanders:
        if id(linear) in seen:
            continue
        group = graph.get_pruning_group(
            linear, tp.prune_linear_out_channels, idxs=list(range(size))
        )
        # Importance of an intermediate channel: the L2 norm of everything it touches in its group.
        score = torch.zeros(size)
        for dep, _ in group:
            layer = dep.target.module
            if not isinstance(layer, nn.Linear):
                continue
            w = layer.weight.detach()
            if layer.out_features == size:  # an expander (gated MLPs have two): rows are channels
                seen.add(id(layer))
                score += w.norm(dim=1).cpu() ** 2
            else:  # the contracting layer: columns are channels
                score += w.norm(dim=0).cpu() ** 2
        drop = torch.argsort(score)[: size - keep].tolist()
        graph.get_pruning_group(linear, tp.prune_linear_out_channels, idxs=drop).prune()
    module.config.intermediate_size = keep
    return student
