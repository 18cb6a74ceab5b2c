"""Per-layer sensitivity to dynamic int8 quantization, measured on the model's output.

Each weight MatMul/Gemm is quantized alone and the model's output is compared with the float
model's on the same inputs. Rather than calling the quantizer once per layer (it re-reads and
re-writes the whole model each time), the layer is fake-quantized in memory exactly as
onnxruntime's dynamic int8 kernels see it: the weight rounded per output channel to symmetric
int8, the activation passed through ``DynamicQuantizeLinear`` -> ``DequantizeLinear`` (uint8, the
range observed at run time, as ``DynamicQuantizeMatMul`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class LayerSensitivity:
    name: str
    cosine_mean: float
    cosine_min: float

    @property
    def drop(self) -> float:
        return 1.0 - self.cosine_mean


def _fake_quant_weight(weight: np.ndarray, axis: int) -> np.ndarray:
    """Symmetric int8, one scale per slice along ``axis`` (the output channel)."""
    reduce_axes = tuple(i for i in range(weight.ndim) if i != axis)
    scale = np.abs(weight).max(axis=reduce_axes, keepdims=True) / 127.0
    scale = np.where(scale == 0, 1.0, scale)
    return (np.clip(np.round(weight / scale), -127, 127) * scale).astype(weight.dtype)


def _weight_axis(node: Any) -> int:
    """The output-channel axis of a weight: the last one of a MatMul's, 0 of a Conv's or of a
    Gemm's with transB=1."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return -1


def _with_layer_quantized(proto: Any, node_name: str) -> bytes:
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    node = next(n for n in graph.node if n.name == node_name)
    init = next(t for t in graph.initializer if t.name == node.input[1])
    weight = numpy_helper.to_array(init)
    axis = _weight_axis(node) % weight.ndim
    quantized = f"{init.name}__fakequant"
    graph.initializer.append(numpy_helper.from_array(_fake_quant_weight(weight, axis), quantized))
    activation = node.input[0]
    q, s, z, dq = (f"{node_name}__{k}" for k in ("q", "scale", "zp", "dq"))
    index = list(graph.node).index(node)
    graph.node.insert(index, helper.make_node("DequantizeLinear", [q, s, z], [dq], name=f"{node_name}__DQ"))
    graph.node.insert(index, helper.make_node("DynamicQuantizeLinear", [activation], [q, s, z], name=f"{node_name}__DQL"))
    node.input[0] = dq
    node.input[1] = quantized
    return model.SerializeToString()


def layer_sensitivities(
    proto: Any,
    layers: list[str],
    feeds: list[dict[str, np.ndarray]],
    reference: list[list[np.ndarray]],
    *,
    threads: int = 0,
    on_layer: Callable[[int, int], None] | None = None,
) -> list[LayerSensitivity]:
    """For each layer of ``proto``, the fidelity of the model's output when only that layer is
    quantized (``proto`` itself is left unchanged)."""
    import onnxruntime as ort

    from engine.bench.fidelity import compare, padding_masks

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # the fake-quantized copy leaves the float weight unused: a warning each
    out: list[LayerSensitivity] = []
    for i, name in enumerate(layers):
        session = ort.InferenceSession(_with_layer_quantized(proto, name), opts, providers=["CPUExecutionProvider"])
        outputs = [session.run(None, f) for f in feeds]
        result = compare(reference, outputs, padding_masks(feeds))
        out.append(LayerSensitivity(name, float(result["cosine_mean"]), float(result["cosine_min"])))
        if on_layer is not None:
            on_layer(i + 1, len(layers))
    return out
