"""Unstructured magnitude (L1) pruning of PyTorch models, local or global, one-shot or gradual.

Works on HF checkpoints and on ONNX graphs converted to PyTorch (onnx2torch) and exported back,
so the output keeps the input's format. Masks come from ``torch.nn.utils.prune`` and are folded
into the weights at the end: the saved model is dense with zeros in it, which deflate-compressed
storage shrinks (the report gives dense and compressed sizes and the non-zero count). Zeros in
dense kernels do not make CPU inference faster; only a measured benchmark may claim a speedup.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from engine.context import PassContext
from engine.model import ModelFile
from engine.pruning.recovery import RecoveryOptions
from engine.pruning.torch_pass import TorchPrunePass


class MagnitudePruneConfig(RecoveryOptions):
    sparsity: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="fraction of the prunable weights (>= 2-D, outside embeddings) set to zero",
    )
    scope: Literal["global", "local"] = Field(
        "global",
        description=(
            "global: one magnitude threshold across all layers (keeps more weights where they matter); "
            "local: the same sparsity in every layer"
        ),
    )
    pattern: Literal["unstructured", "2:4"] = Field(
        "unstructured",
        description="2:4 keeps the 2 largest of every 4 weights along the input dimension (sparsity 0.5, one round)",
    )
    schedule: Literal["cubic", "linear"] = Field(
        "cubic",
        description="how sparsity rises over the rounds: cubic (Zhu & Gupta: fast first, slow near the target) or linear",
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="module names (fnmatch patterns, e.g. 'classifier*') whose weights are kept dense",
    )

    @model_validator(mode="after")
    def _pattern_is_one_round(self) -> MagnitudePruneConfig:
        if self.pattern == "2:4" and (self.sparsity != 0.5 or self.steps != 1):
            raise ValueError("pattern 2:4 means sparsity 0.5 reached in one round (steps 1)")
        return self


class MagnitudePrune(TorchPrunePass[MagnitudePruneConfig]):
    op = "prune"
    method = "magnitude"
    summary = "unstructured L1 magnitude pruning (global/local, gradual with fine-tuning, 2:4); zeros compress"
    accepts = ("onnx", "hf")
    devices = ("cpu", "cuda")

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        from engine.formats.torch_model import load_torch, save_torch
        from engine.pruning import magnitude, measure
        from engine.pruning.recovery import prune_in_rounds
        from engine.pruning.schedule import cubic_sparsity, linear_fractions
        from engine.pruning.sparse_storage import storage_report

        cfg = self.config
        tm = load_torch(model).trainable()
        tm.module.to(ctx.device)
        if cfg.schedule == "cubic":
            targets = cubic_sparsity(cfg.sparsity, cfg.steps)
        else:
            targets = [cfg.sparsity * f for f in linear_fractions(cfg.steps)]
        ctx.resolved["sparsity_per_round"] = [round(s, 4) for s in targets]

        def prune_round(index: int) -> dict[str, object]:
            applied = magnitude.apply_masks(
                tm.module,
                sparsity=targets[index],
                scope=cfg.scope,
                pattern=cfg.pattern,
                exclude=cfg.exclude,
            )
            return {"target_sparsity": round(targets[index], 4), **applied}

        rounds = prune_in_rounds(tm, ctx, cfg, prune_round, name="prune")
        magnitude.fold_masks(tm.module)
        final = magnitude.weight_sparsity(magnitude.prunable_weights(tm.module, cfg.exclude))
        tm.module.to("cpu")
        # Its own folder: a sparse model ships as a deflated zip of that folder (engine.job).
        out = save_torch(tm, ctx.subdir("model"))
        storage = storage_report(model, out)
        report = {
            "method": "magnitude",
            "scope": cfg.scope,
            "pattern": cfg.pattern,
            "prunable_sparsity": final["sparsity"],
            **storage,
            "macs": measure.count_macs(tm),
            **rounds,
        }
        ctx.add_report_section("prune", report)
        ctx.resolved["achieved_sparsity"] = round(final["sparsity"], 4)
        return out.with_path(out.path, sparsity=storage["sparsity"])
