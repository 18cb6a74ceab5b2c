"""Unstructured and N:M magnitude pruning of PyTorch modules with ``torch.nn.utils.prune``.

Masks live as forward pre-hooks (``weight = weight_orig * weight_mask``) while the model is
fine-tuned, so pruned weights stay zero under the optimizer; ``fold_masks`` makes them plain zeros
in the weights before the model is saved. ``prune_model`` is what ``prune.magnitude`` does to a
model file: masks in rounds on a sparsity schedule, fine-tuning between them, folded and saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Any

from engine.context import PassContext
from engine.model import ModelFile
from engine.pruning.options import Pattern, Schedule, Scope
from engine.pruning.recovery import RecoveryOptions


@dataclass(frozen=True)
class WeightTarget:
    module: Any  # torch.nn.Module
    name: str  # the parameter's name in ``module``
    qualified_name: str
    # The dimension the weight reduces over (N:M groups run along it).
    input_dim: int


def prunable_weights(root: Any, exclude: list[str] | tuple[str, ...] = ()) -> list[WeightTarget]:
    """Float weights with two or more dimensions, outside embeddings and excluded modules.

    Embedding tables are skipped: their rows are looked up, not multiplied, so zeros there save no
    compute and cost quality. A weight shared by two modules (tied heads) is taken once.
    """
    import torch.nn as nn

    seen: set[int] = set()
    targets: list[WeightTarget] = []
    for module_name, module in root.named_modules():
        if isinstance(module, nn.Embedding | nn.EmbeddingBag):
            for p in module.parameters(recurse=False):
                seen.add(id(p))
            continue
        if any(fnmatch(module_name, pattern) for pattern in exclude):
            continue
        for name, param in module.named_parameters(recurse=False):
            if (
                name.endswith("_orig")
                or param.dim() < 2
                or not param.is_floating_point()
                or id(param) in seen
            ):
                continue
            seen.add(id(param))
            # nn.Linear / nn.ConvNd keep [out, in, ...]; a bare MatMul weight (onnx2torch) is [in, out].
            input_dim = 1 if isinstance(module, nn.Linear | nn.modules.conv._ConvNd) else 0
            qualified = f"{module_name}.{name}" if module_name else name
            targets.append(WeightTarget(module, name, qualified, input_dim))
    return targets


def _nm_mask(weight: Any, input_dim: int, keep: int, group: int) -> Any:
    """Keep the ``keep`` largest of every ``group`` consecutive weights along the input dimension."""
    import torch

    moved = weight.movedim(input_dim, -1)
    groups = moved.abs().reshape(-1, group)
    top = groups.topk(keep, dim=1).indices
    mask = torch.zeros_like(groups).scatter_(1, top, 1.0)
    return mask.reshape(moved.shape).movedim(-1, input_dim)


def _nm_method() -> Any:
    from torch.nn.utils import prune

    class NMPruning(prune.BasePruningMethod):
        """N:M sparsity (2:4 for Ampere sparse tensor cores) as a torch.nn.utils.prune method."""

        PRUNING_TYPE = "unstructured"

        def __init__(self, input_dim: int, keep: int = 2, group: int = 4):
            self.input_dim, self.keep, self.group = input_dim, keep, group

        def compute_mask(self, t: Any, default_mask: Any) -> Any:
            return default_mask * _nm_mask(t * default_mask, self.input_dim, self.keep, self.group)

    return NMPruning


def fold_masks(root: Any) -> int:
    """Make every mask permanent (zeros stored in the weight itself); returns how many were folded."""
    from torch.nn.utils import prune

    folded = 0
    for module in root.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod | prune.PruningContainer):
                prune.remove(module, hook._tensor_name)
                folded += 1
    return folded


def apply_masks(
    root: Any,
    *,
    sparsity: float,
    scope: Scope,
    pattern: Pattern,
    exclude: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Mask the smallest-magnitude weights so that ``sparsity`` of the prunable weights are zero.

    Earlier masks are folded first: weights already at zero have the smallest magnitude, so the
    new mask contains the old one and a schedule only ever adds zeros.
    """
    from torch.nn.utils import prune

    fold_masks(root)
    targets = prunable_weights(root, exclude)
    skipped: list[str] = []
    if pattern == "2:4":
        method = _nm_method()
        for t in targets:
            if getattr(t.module, t.name).shape[t.input_dim] % 4:
                skipped.append(t.qualified_name)
                continue
            method.apply(t.module, t.name, input_dim=t.input_dim)
    elif scope == "global":
        prune.global_unstructured(
            [(t.module, t.name) for t in targets],
            pruning_method=prune.L1Unstructured,
            amount=sparsity,
        )
    else:
        for t in targets:
            prune.l1_unstructured(t.module, t.name, amount=sparsity)
    return {
        "layers": len(targets) - len(skipped),
        "skipped_layers": skipped,
        **weight_sparsity(targets),
    }


def weight_sparsity(targets: list[WeightTarget]) -> dict[str, Any]:
    """Zeros among the prunable weights (as the forward pass sees them, masks applied)."""
    total = zeros = 0
    for t in targets:
        weight = getattr(t.module, t.name)
        total += weight.numel()
        zeros += int((weight == 0).sum())
    return {
        "prunable_params": total,
        "zero_params": zeros,
        "sparsity": zeros / total if total else 0.0,
    }


def prune_model(
    model: ModelFile,
    ctx: PassContext,
    options: RecoveryOptions,
    *,
    sparsity: float,
    scope: Scope,
    pattern: Pattern,
    schedule: Schedule,
    exclude: list[str],
) -> ModelFile:
    """Prune ``model`` to ``sparsity`` in ``options.steps`` rounds; reports into ``ctx``."""
    from engine.formats.torch_model import load_torch, save_torch
    from engine.pruning import measure
    from engine.pruning.recovery import prune_in_rounds
    from engine.pruning.schedule import cubic_sparsity, linear_fractions
    from engine.pruning.sparse_storage import storage_report

    tm = load_torch(model).trainable()
    tm.module.to(ctx.device)
    if schedule == "cubic":
        targets = cubic_sparsity(sparsity, options.steps)
    else:
        targets = [sparsity * f for f in linear_fractions(options.steps)]
    ctx.resolved["sparsity_per_round"] = [round(s, 4) for s in targets]

    def prune_round(index: int) -> dict[str, object]:
        applied = apply_masks(
            tm.module, sparsity=targets[index], scope=scope, pattern=pattern, exclude=exclude
        )
        return {"target_sparsity": round(targets[index], 4), **applied}

    rounds = prune_in_rounds(tm, ctx, options, prune_round, name="prune")
    fold_masks(tm.module)
    final = weight_sparsity(prunable_weights(tm.module, exclude))
    tm.module.to("cpu")
    # Its own folder: a sparse model ships as a deflated zip of that folder (engine.job).
    out = save_torch(tm, ctx.subdir("model"))
    storage = storage_report(model, out)
    report = {
        "method": "magnitude",
        "scope": scope,
        "pattern": pattern,
        "prunable_sparsity": final["sparsity"],
        **storage,
        "macs": measure.count_macs(tm),
        **rounds,
    }
    ctx.add_report_section("prune", report)
    ctx.resolved["achieved_sparsity"] = round(final["sparsity"], 4)
    return out.with_path(out.path, sparsity=storage["sparsity"])
