"""ONNX static int8 quantization (QDQ) calibrated on the job's dataset.

Activation ranges are fixed ahead of time from calibration rows (onnxruntime's calibrators:
minmax, entropy, percentile), so no range is computed at run time. Calibration reads only the
job's dataset (``ctx.dataset``): without one, the pass refuses with ``dataset_required``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.context import PassContext
from engine.errors import DatasetMismatch
from engine.formats import onnx_model
from engine.model import ModelFile
from engine.quantization import onnx_quant
from engine.registry import Pass, PassConfig


class StaticQuantizeConfig(PassConfig):
    calibration_method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="how activation ranges are chosen from the calibration rows"
    )
    calibration_samples: int = Field(
        128, ge=1, le=100_000, description="dataset rows used for calibration (the first N)"
    )
    percentile: float = Field(
        99.999, gt=90.0, le=100.0, description="for calibration_method=percentile: the kept percentile of |x|"
    )
    per_channel: bool = Field(True, description="one weight scale per output channel")
    activation: Literal["uint8", "int8"] = Field(
        "uint8", description="activation type; uint8 (asymmetric) suits post-ReLU/GELU activations"
    )
    weight: Literal["int8", "uint8"] = Field("int8", description="weight type")
    reduce_range: onnx_quant.ReduceRange = onnx_quant.reduce_range_field()
    preprocess: bool = Field(True, description="run onnxruntime's quant_pre_process before quantizing")
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
    nodes_to_exclude: list[str] = Field(default_factory=list, description="node names kept in float")


class StaticQuantize(Pass[StaticQuantizeConfig]):
    op = "quantize"
    method = "static"
    summary = "ONNX static int8 (QDQ): activation ranges calibrated on the job's dataset"
    accepts = ("onnx",)
    devices = ("cpu",)
    needs_dataset = True

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        cfg = self.config
        dataset = ctx.require_dataset("static quantization calibrates activation ranges on it")
        inputs, _ = onnx_model.signature(onnx_model.load_proto(model.path, with_data=False))
        missing = [spec["name"] for spec in inputs if spec["name"] not in dataset.arrays]
        if missing:
            raise DatasetMismatch(
                f"calibration needs one dataset array per model input; missing {missing}",
                detail={"missing": missing, "model_inputs": [s["name"] for s in inputs]},
            )
        src = onnx_quant.preprocess(model.path, ctx.work_dir / "preprocessed.onnx") if cfg.preprocess else model.path
        reader = onnx_quant.DatasetCalibrationReader(dataset, inputs, samples=cfg.calibration_samples)
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[cfg.calibration_method]
        dest = ctx.work_dir / "model.onnx"
        ctx.progress(0.1, f"calibrating on {reader.rows} rows ({cfg.calibration_method})")
        quantize_static(
            model_input=str(src),
            model_output=str(dest),
            calibration_data_reader=reader,  # type: ignore[arg-type]
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(cfg.op_types),
            per_channel=cfg.per_channel,
            reduce_range=onnx_quant.resolve_reduce_range(cfg.reduce_range, ctx),
            activation_type=QuantType.QUInt8 if cfg.activation == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8 if cfg.weight == "int8" else QuantType.QUInt8,
            nodes_to_exclude=cfg.nodes_to_exclude or None,
            calibrate_method=method,
            extra_options={"CalibPercentile": cfg.percentile} if cfg.calibration_method == "percentile" else {},
        )
        onnx_quant.quiet_quantization_logging()
        ctx.resolved["calibration_rows"] = reader.rows
        if src != model.path:
            src.unlink(missing_ok=True)
        return model.with_path(dest)
