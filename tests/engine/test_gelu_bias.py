"""The int8 MatMul before a BiasGelu takes its bias (engine/quantization/gelu_bias.py): the same
outputs as the graph onnxruntime's quantizer wrote, with the bias inside DynamicQuantizeMatMul and
a plain Gelu, with or without the outlier split's float correction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.quantization import gelu_bias, onnx_quant

HIDDEN, FFN = 32, 64


def _ffn(path: Path, *, split: bool) -> Path:
    """x -> MatMul(W) [+ MatMul(W_float) over the same x, the outlier split's spelling] -> BiasGelu(b)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.2, (HIDDEN, FFN)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.normal(0, 0.5, FFN).astype(np.float32), "b")]  # fmt: skip
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="ffn_in")]
    gelu_input = "h"
    if split:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.2, (HIDDEN, FFN)).astype(np.float32), "W_float"))
        nodes += [helper.make_node("MatMul", ["x", "W_float"], ["h_float"], name="ffn_in_float"),
                  helper.make_node("Add", ["h", "h_float"], ["h_sum"], name="split_sum")]  # fmt: skip
        gelu_input = "h_sum"
    nodes.append(helper.make_node("BiasGelu", [gelu_input, "b"], ["y"], name="bias_gelu", domain="com.microsoft"))
    graph = helper.make_graph(
        nodes, "ffn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", FFN])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    onnx.save(model, str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("split", [False, True])
def test_the_bias_moves_into_the_int8_matmul_and_the_outputs_stay(tmp_path: Path, split: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = _ffn(tmp_path / "ffn.onnx", split=split)
    excluded = ["ffn_in_float"] if split else []
    # What onnxruntime's quantizer writes, untouched: the reference.
    quantize_dynamic(str(src), str(tmp_path / "plain.onnx"), weight_type=QuantType.QInt8, per_channel=True,
                     nodes_to_exclude=excluded, extra_options={"DefaultTensorType": TensorProto.FLOAT})  # fmt: skip
    assert "BiasGelu" in _ops(tmp_path / "plain.onnx")

    folded = onnx_quant.dynamic_int8(src, tmp_path / "int8.onnx", nodes_to_exclude=excluded)

    ops = _ops(folded)
    assert "BiasGelu" not in ops and "Gelu" in ops and "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops
    [fused] = [n for n in onnx.load(str(folded)).graph.node if n.op_type == "DynamicQuantizeMatMul"]
    assert list(fused.input)[-1] == "b"
    assert ops.count("MatMul") == (1 if split else 0)  # the float correction stays float
    x = np.random.default_rng(1).normal(0, 1, (4, 7, HIDDEN)).astype(np.float32)
    np.testing.assert_allclose(_run(folded, x), _run(tmp_path / "plain.onnx", x), rtol=1e-4, atol=1e-5)


def test_a_matmul_whose_output_is_read_elsewhere_keeps_its_bias_gelu(tmp_path: Path) -> None:
    """The int8 MatMul's output also feeds the graph's output: moving the bias in would change it."""
    src = _ffn(tmp_path / "ffn.onnx", split=False)
    model = onnx.load(str(src))
    model.graph.output.append(helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", "seq", FFN]))
    onnx.save(model, str(src))

    out = onnx_quant.dynamic_int8(src, tmp_path / "int8.onnx")

    assert "BiasGelu" in _ops(out)
    assert gelu_bias.rewrite(onnx.load(str(out))) == 0
