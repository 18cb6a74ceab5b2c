"""Quantization-aware training (torchao fake quantization + the shared training loop) on the
digits CNN, delivered as an onnxruntime int8 model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import materials
from engine.context import PassContext
from engine.data import Dataset
from engine.errors import DatasetRequired
from engine.formats import onnx_model
from engine.model import ModelFile
from engine.registry import build_step


def _accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    return float((onnx_model.session(path).run(None, {"image": x})[0].argmax(1) == y).mean())


def test_qat_int8_digits_cnn_ends_within_one_point_of_fp32(tmp_path: Path) -> None:
    cnn = ModelFile(materials.digits_cnn_onnx(), "onnx")
    x_train, x_test, y_train, y_test = materials.digits()
    ctx = PassContext(work_dir=tmp_path, original=cnn, dataset=Dataset("npz", arrays={"image": x_train}, labels=y_train))
    step = build_step({"op": "quantize", "method": "qat", "epochs": 2})
    step.check(cnn, ctx)
    out = step.run(cnn, ctx)
    assert out.format == "onnx"
    ops = {n.op_type for n in onnx_model.load_proto(out.path, with_data=False).graph.node}
    assert ops & {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
    assert cnn.path.stat().st_size / out.path.stat().st_size > 3.0
    assert ctx.resolved["fake_quantized_linears"] == 1
    history = ctx.report_sections["qat"]["history"]
    assert history[-1]["epoch"] >= 1 and history[-1]["loss"] is not None
    assert _accuracy(out.path, x_test, y_test) >= _accuracy(cnn.path, x_test, y_test) - 0.01


def test_qat_without_a_dataset_is_refused(tmp_path: Path) -> None:
    cnn = ModelFile(materials.digits_cnn_onnx(), "onnx")
    ctx = PassContext(work_dir=tmp_path, original=cnn)
    with pytest.raises(DatasetRequired):
        build_step({"op": "quantize", "method": "qat"}).check(cnn, ctx)
