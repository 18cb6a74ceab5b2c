"""ONNX static int8 (QDQ) with onnxruntime's ``quantize_static``: ``quantize.static`` and the
default on convolutional models (``convolutional``) both call ``quantize`` here."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from engine.data import Dataset
from engine.errors import DatasetMismatch
from engine.formats import onnx_model
from engine.quantization import onnx_quant


def calibration_reader(model_path: Path, dataset: Dataset, *, samples: int) -> onnx_quant.DatasetCalibrationReader:
    """The first ``samples`` rows of ``dataset`` as the model's inputs; DatasetMismatch when the
    dataset has no array for one of them."""
    inputs, _ = onnx_model.signature(onnx_model.load_proto(model_path, with_data=False))
    missing = [spec["name"] for spec in inputs if spec["name"] not in dataset.arrays]
    if missing:
        raise DatasetMismatch(
            f"calibration needs one dataset array per model input; missing {missing}",
            detail={"missing": missing, "model_inputs": [s["name"] for s in inputs]},
        )
    return onnx_quant.DatasetCalibrationReader(dataset, inputs, samples=samples)


def quantize(
    src: Path,
    dest: Path,
    reader: onnx_quant.CalibrationReader,
    *,
    calibration_method: Literal["minmax", "entropy", "percentile"],
    percentile: float,
    per_channel: bool,
    activation: Literal["uint8", "int8"],
    weight: Literal["int8", "uint8"],
    reduce_range: bool,
    op_types: list[str],
    nodes_to_exclude: list[str],
) -> Path:
    """QDQ int8 of ``src`` into ``dest``, activation ranges calibrated on ``reader``'s rows (the job's
    dataset, or for the default on a convolutional model, generated inputs when there is none)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[calibration_method]
    extra_options: dict[str, Any] = {"CalibPercentile": percentile} if calibration_method == "percentile" else {}
    quantize_static(
        model_input=str(src),
        model_output=str(dest),
        calibration_data_reader=reader,  # type: ignore[arg-type]
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=op_types,
        per_channel=per_channel,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8 if weight == "int8" else QuantType.QUInt8,
        nodes_to_exclude=nodes_to_exclude or None,
        calibrate_method=method,
        extra_options=extra_options,
    )
    onnx_quant.quiet_quantization_logging()
    return dest
