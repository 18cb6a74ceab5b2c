"""prune.onnx_magnitude on ONNX initializers, and PyTorch pruning refusing graphs it cannot convert."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench import materials
from engine.bench.sizes import size_on_disk
from engine.context import PassContext
from engine.errors import ConversionUnsupported
from engine.model import ModelFile
from engine.registry import build_step
from tests.engine.pruning_support import (
    initializer_arrays,
    onnx_outputs,
    onnx_test_accuracy,
    run_step,
)


def _graph_onnx2torch_cannot_convert(dest: Path) -> ModelFile:
    """x @ W1 -> Shrink -> @ W2: onnxruntime runs it; onnx2torch has no Shrink converter."""
    import onnx

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((16, 64)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Shrink", ["h"], ["s"], lambd=0.5),
        helper.make_node("MatMul", ["s", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "shrinkable",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        initializer=[w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(dest))
    return ModelFile(dest, "onnx")


def test_onnx_magnitude_zeroes_weights_in_place_and_compresses(tmp_path: Path) -> None:
    cnn = ModelFile(materials.digits_cnn_onnx(), "onnx")
    out, ctx = run_step({"op": "prune", "method": "onnx_magnitude", "sparsity": 0.8}, cnn, tmp_path)

    before, after = initializer_arrays(cnn.path), initializer_arrays(out.path)
    assert before.keys() == after.keys()
    for name, weight in after.items():
        if weight.ndim >= 2:
            assert (weight == 0).mean() == pytest.approx(0.8, abs=0.01), name  # local: every layer
            kept = weight != 0
            np.testing.assert_array_equal(weight[kept], before[name][kept])  # survivors untouched
        else:
            np.testing.assert_array_equal(weight, before[name])  # biases stay
    report = ctx.report_sections["prune"]
    assert report["compressed_size_bytes"] == size_on_disk(out)["compressed_size_bytes"]
    assert report["original_size_bytes"] / report["compressed_size_bytes"] >= 3.0
    assert 0.0 <= onnx_test_accuracy(out.path) <= 1.0  # still a runnable classifier


def test_onnx_magnitude_global_scope_hits_the_exact_sparsity(tmp_path: Path) -> None:
    model = _graph_onnx2torch_cannot_convert(tmp_path / "in.onnx")
    out, _ = run_step(
        {"op": "prune", "method": "onnx_magnitude", "sparsity": 0.7, "scope": "global"},
        model,
        tmp_path / "out",
    )
    weights = initializer_arrays(out.path)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros == round(0.7 * sum(w.size for w in weights.values()))
    # The unconvertible graph was pruned without conversion and still runs.
    x = np.ones((2, 16), dtype=np.float32)
    assert onnx_outputs(out.path, {"x": x}).shape == (2, 10)


@pytest.mark.parametrize("method", ["magnitude", "structured"])
def test_pytorch_pruning_refuses_unconvertible_graph_naming_the_operators(
    method: str, tmp_path: Path
) -> None:
    model = _graph_onnx2torch_cannot_convert(tmp_path / "in.onnx")
    step = build_step({"op": "prune", "method": method})
    with pytest.raises(ConversionUnsupported, match="Shrink") as caught:
        step.check(model, PassContext(work_dir=tmp_path, original=model))  # before any work
    assert caught.value.detail["unsupported_operators"] == ["ai.onnx::Shrink"]
    assert "onnx magnitude pruning" in caught.value.message


def test_every_prune_option_is_described_for_the_capabilities_schema() -> None:
    from engine.registry import all_passes, step_schema

    prune_passes = [p for p in all_passes() if p.op == "prune"]
    assert {p.method for p in prune_passes} == {"magnitude", "structured", "onnx_magnitude"}
    for pass_type in prune_passes:
        schema = step_schema(pass_type)
        for name, field in schema["properties"].items():
            if name not in ("op", "method"):
                assert field.get("description"), f"{pass_type.method}.{name}"
        assert schema["additionalProperties"] is False
