"""Magnitude pruning of ONNX weight initializers, without converting the graph.

Applies to any ONNX graph, including those onnx2torch cannot convert; there is no fine-tuning
(use ``prune.magnitude`` for that, on graphs that convert). The saving is in compressed storage:
zeros deflate to almost nothing, the dense file keeps its size and its speed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.context import PassContext
from engine.model import ModelFile
from engine.registry import Pass, PassConfig


class OnnxMagnitudePruneConfig(PassConfig):
    sparsity: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="fraction of the weights of Conv/Gemm/MatMul initializers set to zero",
    )
    scope: Literal["global", "local"] = Field(
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
        from engine.formats.onnx_model import load_proto, save_proto
        from engine.pruning.onnx_initializers import prune_initializers
        from engine.pruning.sparse_storage import storage_report

        cfg = self.config
        proto = load_proto(model.path)
        applied = prune_initializers(proto, sparsity=cfg.sparsity, scope=cfg.scope)
        # Its own folder: a sparse model ships as a deflated zip of that folder (engine.job).
        dest = ctx.subdir("model") / "model.onnx"
        save_proto(proto, dest)
        out = model.with_path(dest, "onnx")
        storage = storage_report(model, out)
        ctx.add_report_section(
            "prune",
            {
                "method": "onnx_magnitude",
                "scope": cfg.scope,
                "layers": applied["layers"],
                "prunable_sparsity": applied["sparsity"],
                **storage,
            },
        )
        ctx.resolved["achieved_sparsity"] = round(applied["sparsity"], 4)
        return out.with_path(dest, sparsity=storage["sparsity"])
