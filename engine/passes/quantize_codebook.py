"""Nonlinear (codebook) quantization: k-means clustering of each weight tensor to 2^bits shared
values (Deep Compression, Han et al. 2016), stored as indices plus a codebook
(engine/quantization/codebook.py).

Each clustered initializer ``W`` becomes a uint8 index tensor and a float codebook, and the graph
gets ``W = Gather(codebook, Cast(indices, int32))``. The file really is smaller (one byte per
weight instead of four), and it runs in plain onnxruntime: the decode has only constant inputs, so
the runtime folds it once when the session loads. Hence the honest limits: memory and speed at
run time are those of the float model, and below 8 bits the indices still take one byte each on
disk (the zip-compressed size, which the benchmark reports, does shrink with fewer bits).
"""

from __future__ import annotations

from pydantic import Field

from engine.context import PassContext
from engine.errors import PassNotApplicable
from engine.formats import onnx_model
from engine.model import ModelFile
from engine.quantization import codebook
from engine.registry import Pass, PassConfig


class CodebookConfig(PassConfig):
    bits: int = Field(8, ge=1, le=8, description="2^bits shared values per tensor; indices are stored as uint8")
    min_elements: int = Field(4096, ge=16, description="tensors smaller than this stay float (biases, norms)")
    kmeans_sample: int = Field(
        20_000, ge=1000, le=10_000_000, description="values per tensor the centroids are fitted on (all are assigned)"
    )


class CodebookQuantize(Pass[CodebookConfig]):
    op = "quantize"
    method = "codebook"
    summary = "k-means codebook: 2^bits shared values per weight tensor, stored as uint8 indices + codebook"
    accepts = ("onnx",)
    devices = ("cpu", "cuda")

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        cfg = self.config
        proto = onnx_model.load_proto(model.path)
        targets = codebook.weight_tensors(proto, cfg.min_elements)
        if not targets:
            raise PassNotApplicable(
                f"quantize.codebook found no float weight with at least {cfg.min_elements} elements",
                detail={"pass": self.name},
            )

        def on_tensor(i: int, name: str) -> None:
            ctx.check_cancel()
            ctx.progress(i / len(targets), f"clustering {name}")

        codebook.encode(proto, targets, bits=cfg.bits, sample=cfg.kmeans_sample, seed=ctx.seed, on_tensor=on_tensor)
        dest = onnx_model.save_proto(proto, ctx.work_dir / "model.onnx")
        ctx.resolved["clustered_tensors"] = len(targets)
        return model.with_path(dest)
