"""Magnitude pruning of ONNX weight initializers, without converting the graph.

Applies to any ONNX graph, including those onnx2torch cannot convert; there is no fine-tuning
(use ``prune.magnitude`` for that, on graphs that convert). The saving is in compressed storage:
zeros deflate to almost nothing, the dense file keeps its size and its speed.
"""

from __future__ import annotations

from pydantic import Field

from engine.context import PassContext
from engine.model import ModelFile
from engine.pruning.options import Fraction, Scope
from engine.registry import Pass, PassConfig


class OnnxMagnitudePruneConfig(PassConfig):
    sparsity: Fraction = Field(
        0.5, description="fraction of the weights of Conv/Gemm/MatMul initializers set to zero"
    )
    scope: Scope = Field(
        "local",
        description=(
            "local: the same sparsity in every weight (safe without fine-tuning); "
            "global: one threshold across weights (layers with small weights lose more)"
        ),
    )


class OnnxMagnitudePrune(Pass[OnnxMagnitudePruneConfig]):
    op = "prune"
    method = "onnx_magnitude"
    summary = (
        "zero the smallest ONNX weights in place (no conversion, no fine-tuning); zeros compress"
    )
    accepts = ("onnx",)
    devices = ("cpu", "cuda")

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        from engine.pruning.onnx_initializers import prune_model

        return prune_model(model, ctx, sparsity=self.config.sparsity, scope=self.config.scope)
