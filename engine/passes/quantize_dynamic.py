"""ONNX dynamic int8 quantization with onnxruntime.quantization.quantize_dynamic.

Weights are quantized ahead of time; activations are quantized at run time from their observed
range, so no calibration data is needed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.context import PassContext
from engine.model import ModelFile
from engine.registry import Pass, PassConfig


class DynamicQuantizeConfig(PassConfig):
    weight: Literal["int8", "uint8"] = Field("int8", description="weight type")
    per_channel: bool = Field(True, description="one scale per output channel (much better fidelity)")
    reduce_range: bool = Field(False, description="7-bit weights, for CPUs without VNNI that saturate")
    op_types: list[str] | None = Field(
        None, description="operator types to quantize (default: MatMul, Gemm, Attention, and the like)"
    )
    nodes_to_exclude: list[str] = Field(default_factory=list, description="node names kept in float")


class DynamicQuantize(Pass):
    op = "quantize"
    method = "dynamic"
    config_type = DynamicQuantizeConfig
    summary = "ONNX dynamic int8: int8 weights, activations quantized at run time"
    accepts = ("onnx",)
    devices = ("cpu",)
    # Until the quantization issue lands its measured default (quantize.auto).
    default_for_op = True

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        cfg: DynamicQuantizeConfig = self.config  # type: ignore[assignment]
        dest = ctx.work_dir / "model.onnx"
        quantize_dynamic(
            model_input=str(model.path),
            model_output=str(dest),
            weight_type=QuantType.QInt8 if cfg.weight == "int8" else QuantType.QUInt8,
            per_channel=cfg.per_channel,
            reduce_range=cfg.reduce_range,
            op_types_to_quantize=cfg.op_types,
            nodes_to_exclude=cfg.nodes_to_exclude or None,
        )
        return model.with_path(dest)
