"""Unstructured magnitude (L1) pruning of PyTorch models, local or global, one-shot or gradual.

Works on HF checkpoints and on ONNX graphs converted to PyTorch (onnx2torch) and exported back,
so the output keeps the input's format. Masks come from ``torch.nn.utils.prune`` and are folded
into the weights at the end: the saved model is dense with zeros in it, which deflate-compressed
storage shrinks (the report gives dense and compressed sizes and the non-zero count). Zeros in
dense kernels do not make CPU inference faster; only a measured benchmark may claim a speedup.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from engine.context import PassContext
from engine.model import ModelFile
from engine.pruning.options import Fraction, Pattern, Schedule, Scope
from engine.pruning.recovery import RecoveryOptions
from engine.pruning.torch_pass import TorchPrunePass


class MagnitudePruneConfig(RecoveryOptions):
    sparsity: Fraction = Field(
        0.5,
        description="fraction of the prunable weights (>= 2-D, outside embeddings) set to zero",
    )
    scope: Scope = Field(
        "global",
        description=(
            "global: one magnitude threshold across all layers (keeps more weights where they matter); "
            "local: the same sparsity in every layer"
        ),
    )
    pattern: Pattern = Field(
        "unstructured",
        description="2:4 keeps the 2 largest of every 4 weights along the input dimension (sparsity 0.5, one round)",
    )
    schedule: Schedule = Field(
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
        from engine.pruning import magnitude

        cfg = self.config
        return magnitude.prune_model(
            model,
            ctx,
            cfg,
            sparsity=cfg.sparsity,
            scope=cfg.scope,
            pattern=cfg.pattern,
            schedule=cfg.schedule,
            exclude=cfg.exclude,
        )
