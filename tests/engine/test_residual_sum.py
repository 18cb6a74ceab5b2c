"""Residual sums as ``Sum`` + ``LayerNormalization`` (engine/quantization/residual_sum.py): the same
function, and no ``SkipLayerNormalization`` left for onnxruntime to run, neither in the file nor
after a session's own graph optimizer has seen it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.quantization import residual_sum

B, S, H = 2, 5, 16


def _model(nodes: list, *, extra_outputs: tuple[str, ...] = (), opset: int = 17) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(H, H)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=H).astype(np.float32), "bias"),
        numpy_helper.from_array((1 + rng.random(H)).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.normal(size=H).astype(np.float32), "beta"),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S, H])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", *extra_outputs)],
        inits,
    )  # fmt: skip
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def _skip_layernorm_graph(**kwargs) -> onnx.ModelProto:
    """What the transformer optimizer writes: MatMul, then SkipLayerNormalization with the bias."""
    return _model(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node(
                "SkipLayerNormalization", ["h", "x", "gamma", "beta", "bias"], ["y"], domain="com.microsoft", epsilon=1e-5
            ),
        ],
        **kwargs,
    )


def _add_add_layernorm_graph() -> onnx.ModelProto:
    """What an exporter writes: a bias Add, the residual Add, LayerNormalization (static shapes,
    so that a session fuses them into SkipLayerNormalization at load time)."""
    return _model([
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["h", "bias"], ["hb"]),
        helper.make_node("Add", ["hb", "x"], ["r"]),
        helper.make_node("LayerNormalization", ["r", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-5),
    ])  # fmt: skip


def _run(model: onnx.ModelProto, x: np.ndarray, tmp_path: Path, name: str) -> tuple[np.ndarray, list[str]]:
    """The output, and the op types of the graph a default session actually runs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / f"{name}-optimized.onnx")
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ran = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    return session.run(["y"], {"x": x})[0], ran


def _x() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(B, S, H)).astype(np.float32)


def test_skip_layernormalization_becomes_sum_and_layernormalization(tmp_path: Path) -> None:
    model = _skip_layernorm_graph()
    before, ran_before = _run(model, _x(), tmp_path, "before")
    assert "SkipLayerNormalization" in ran_before
    assert residual_sum.rewrite(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["MatMul", "Sum", "LayerNormalization"]
    assert len(model.graph.node[1].input) == 3  # input, skip and bias in one pass
    after, ran_after = _run(model, _x(), tmp_path, "after")
    assert "SkipLayerNormalization" not in ran_after
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_adds_before_a_layernormalization_escape_the_load_time_fusion(tmp_path: Path) -> None:
    model = _add_add_layernorm_graph()
    before, ran_before = _run(model, _x(), tmp_path, "before")
    # Without the rewrite, a default session runs onnxruntime's SkipLayerNormalization.
    assert "SkipLayerNormalization" in ran_before
    assert residual_sum.rewrite(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Sum", "LayerNormalization"]
    assert sorted(model.graph.node[1].input) == ["bias", "h", "x"]
    after, ran_after = _run(model, _x(), tmp_path, "after")
    assert "SkipLayerNormalization" not in ran_after and "Sum" in ran_after
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
    # Rewriting again finds the sum already flat and changes nothing.
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    residual_sum.rewrite(copy)
    assert copy == model


def test_an_add_read_elsewhere_is_not_absorbed() -> None:
    """The bias Add's output is also a graph output: it must still be computed on its own."""
    model = _add_add_layernorm_graph()
    model.graph.output.append(helper.make_tensor_value_info("hb", TensorProto.FLOAT, None))
    assert residual_sum.rewrite(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["MatMul", "Add", "Sum", "LayerNormalization"]
    assert sorted(model.graph.node[2].input) == ["hb", "x"]


def test_left_alone_when_the_statistics_are_read_or_the_opset_is_old() -> None:
    stats = _model([
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node(
            "SkipLayerNormalization", ["h", "x", "gamma", "beta"], ["y", "mean"], domain="com.microsoft", epsilon=1e-5
        ),
    ], extra_outputs=("mean",))  # fmt: skip
    assert residual_sum.rewrite(stats) == 0
    assert [n.op_type for n in stats.graph.node] == ["MatMul", "SkipLayerNormalization"]
    old = _skip_layernorm_graph(opset=13)  # no LayerNormalization op before opset 17
    assert residual_sum.rewrite(old) == 0
    assert [n.op_type for n in old.graph.node] == ["MatMul", "SkipLayerNormalization"]


def test_unnamed_nodes_get_unique_names(tmp_path: Path) -> None:
    """Exporters may leave node names empty; onnxruntime refuses two nodes of the same name."""
    model = _model([
        helper.make_node("SkipLayerNormalization", ["x", "x", "gamma", "beta"], ["h"], domain="com.microsoft"),
        helper.make_node("SkipLayerNormalization", ["h", "x", "gamma", "beta"], ["y"], domain="com.microsoft"),
    ])  # fmt: skip
    before, _ = _run(model, _x(), tmp_path, "before")
    assert residual_sum.rewrite(model) == 2
    names = [n.name for n in model.graph.node]
    assert len(set(names)) == len(names) == 4
    after, _ = _run(model, _x(), tmp_path, "after")
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
