"""ONNX static int8 quantization (QDQ) calibrated on the job's dataset.

Activation ranges are fixed ahead of time from calibration rows (onnxruntime's calibrators:
minmax, entropy, percentile), so no range is computed at run time. Calibration reads only the
job's dataset (``ctx.dataset``): without one, the pass refuses with ``dataset_required``. The
mechanics are in engine/quantization/static.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.context import PassContext
from engine.model import ModelFile
from engine.quantization import onnx_quant, static
from engine.quantization.options import (
    ExcludedNodesOption,
    PerChannelOption,
    PreprocessOption,
    ReduceRangeOption,
)
from engine.registry import Pass


class StaticQuantizeConfig(PerChannelOption, ReduceRangeOption, PreprocessOption, ExcludedNodesOption):
    calibration_method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="how activation ranges are chosen from the calibration rows"
    )
    calibration_samples: int = Field(
        128, ge=1, le=100_000, description="dataset rows used for calibration (the first N)"
    )
    percentile: float = Field(
        99.999, gt=90.0, le=100.0, description="for calibration_method=percentile: the kept percentile of |x|"
    )
    activation: Literal["uint8", "int8"] = Field(
        "uint8", description="activation type; uint8 (asymmetric) suits post-ReLU/GELU activations"
    )
    weight: Literal["int8", "uint8"] = Field("int8", description="weight type")
    op_types: list[
        Literal["MatMul", "Gemm", "Conv", "ConvTranspose", "Gather", "Relu", "Clip", "MaxPool", "AveragePool", "Add", "Mul",
                "Resize", "Reshape", "Transpose", "Flatten", "LayerNormalization", "InstanceNormalization"]
    ] = Field(
        default_factory=lambda: ["Conv", "ConvTranspose", "MatMul", "Gemm"],
        description=(
            "operator types to quantize; the default is the compute-heavy ones: quantizing everything "
            "onnxruntime can (Where, LayerNormalization, the attention-mask arithmetic) took MiniLM-L6 "
            "to cosine 0.39"
        ),
    )


class StaticQuantize(Pass[StaticQuantizeConfig]):
    op = "quantize"
    method = "static"
    summary = "ONNX static int8 (QDQ): activation ranges calibrated on the job's dataset"
    accepts = ("onnx",)
    devices = ("cpu",)
    needs_dataset = True

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        cfg = self.config
        dataset = ctx.require_dataset("static quantization calibrates activation ranges on it")
        reader = static.calibration_reader(model.path, dataset, samples=cfg.calibration_samples)
        with onnx_quant.preprocessed(model.path, ctx.work_dir, enabled=cfg.preprocess) as src:
            ctx.progress(0.1, f"calibrating on {reader.rows} rows ({cfg.calibration_method})")
            dest = static.quantize(
                src,
                ctx.work_dir / "model.onnx",
                reader,
                calibration_method=cfg.calibration_method,
                percentile=cfg.percentile,
                per_channel=cfg.per_channel,
                activation=cfg.activation,
                weight=cfg.weight,
                reduce_range=onnx_quant.resolve_reduce_range(cfg.reduce_range, ctx),
                op_types=list(cfg.op_types),
                nodes_to_exclude=cfg.nodes_to_exclude,
            )
        ctx.resolved["calibration_rows"] = reader.rows
        return model.with_path(dest)
