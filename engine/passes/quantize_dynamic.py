"""ONNX dynamic int8 quantization with onnxruntime.quantization.quantize_dynamic
(``engine.quantization.onnx_quant.dynamic_int8``).

Weights are quantized ahead of time; activations are quantized at run time from their observed
range, so no calibration data is needed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.context import PassContext
from engine.model import ModelFile
from engine.quantization import onnx_quant
from engine.quantization.options import ExcludedNodesOption, ReduceRangeOption
from engine.registry import Pass


class DynamicQuantizeConfig(ReduceRangeOption, ExcludedNodesOption):
    weight: Literal["int8", "uint8"] = Field(
        "int8", description="weight type; uint8 (u8u8 kernels) is much slower on x86 CPUs with VNNI"
    )
    per_channel: bool = Field(
        True, description="one scale per output channel: MiniLM-L6 cosine 0.992 vs 0.962 per-tensor"
    )
    symmetric: bool = Field(True, description="symmetric weight ranges (zero point 0), what the int8 kernels expect")
    preprocess: bool = Field(
        True, description="run onnxruntime's quant_pre_process (folding, shape inference) before quantizing"
    )
    op_types: list[Literal["MatMul", "Attention", "Gather", "LSTM", "Conv", "Transpose", "EmbedLayerNormalization"]] | None = (
        Field(None, description="operator types to quantize (default: all of these; onnxruntime has no dynamic Gemm)")
    )


class DynamicQuantize(Pass[DynamicQuantizeConfig]):
    op = "quantize"
    method = "dynamic"
    summary = "ONNX dynamic int8: int8 weights, activations quantized at run time"
    accepts = ("onnx",)
    devices = ("cpu",)

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        cfg = self.config
        with onnx_quant.preprocessed(model.path, ctx.work_dir, enabled=cfg.preprocess) as src:
            dest = onnx_quant.dynamic_int8(
                src,
                ctx.work_dir / "model.onnx",
                weight=cfg.weight,
                per_channel=cfg.per_channel,
                symmetric_weights=cfg.symmetric,
                reduce_range=onnx_quant.resolve_reduce_range(cfg.reduce_range, ctx),
                op_types=list(cfg.op_types) if cfg.op_types else None,
                nodes_to_exclude=cfg.nodes_to_exclude,
            )
        return model.with_path(dest)
