"""Block-wise 4-bit (or 8-bit) weight-only quantization of MatMul weights: onnxruntime's
``MatMulNBits`` operator, made by ``MatMulNBitsQuantizer`` (engine/quantization/int4.py).

Made for MatMul-heavy models (transformers, LLMs) whose weights dominate memory. Only MatMul
weights change; embeddings (Gather) stay float, so a model whose size is mostly its embedding
table shrinks less than 4x. ``accuracy_level=4`` lets the CPU kernel quantize activations to
int8 per block and use integer dot products.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.context import PassContext
from engine.errors import PassNotApplicable
from engine.model import ModelFile
from engine.quantization import int4, onnx_quant
from engine.registry import Pass, PassConfig


class Int4Config(PassConfig):
    bits: Literal[4, 8] = Field(4, description="bits per weight")
    block_size: Literal[16, 32, 64, 128, 256] = Field(
        32, description="weights per scale along the reduction axis; smaller is more accurate and larger"
    )
    symmetric: bool = Field(True, description="symmetric blocks (no zero points)")
    accuracy_level: Literal[0, 1, 2, 3, 4] = Field(
        4, description="compute type of the CPU kernel: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8"
    )
    nodes_to_exclude: list[str] = Field(default_factory=list, description="MatMul node names kept in float")


class Int4WeightOnly(Pass[Int4Config]):
    op = "quantize"
    method = "int4"
    summary = "ONNX block-wise 4-bit weight-only MatMul (MatMulNBits)"
    accepts = ("onnx",)
    devices = ("cpu", "cuda")

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        cfg = self.config
        with onnx_quant.preprocessed(model.path, ctx.work_dir) as src:
            dest = int4.quantize(
                src,
                ctx.work_dir / "model.onnx",
                bits=cfg.bits,
                block_size=cfg.block_size,
                symmetric=cfg.symmetric,
                accuracy_level=cfg.accuracy_level,
                nodes_to_exclude=cfg.nodes_to_exclude,
            )
        if dest is None:
            raise PassNotApplicable(
                "quantize.int4 found no MatMul with a constant weight (K a multiple of 16) to quantize; "
                "use quantize.dynamic or quantize.static for convolutional models",
                detail={"pass": self.name},
            )
        return model.with_path(dest)
