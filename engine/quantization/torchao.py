"""torchao post-training quantization of an ONNX graph's Linear weights, written back as operators
onnxruntime runs (``DequantizeLinear`` + MatMul, ``MatMulInteger``, ``MatMulNBits``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from engine.errors import PassNotApplicable

Scheme = Literal["int8_dynamic", "int8_weight_only", "int4_weight_only"]


def torchao_codes(weight_kn: np.ndarray, scheme: str, group_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torchao's quantization of one Linear whose weight is ``weight_kn.T``:
    (codes int8 [N, K], scales [N, K/block], zero points int8 [N, K/block])."""
    import torch
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
        quantize_,
    )
    from torchao.quantization.granularity import PerGroup

    config: Any = {
        "int8_dynamic": lambda: Int8DynamicActivationInt8WeightConfig(),
        "int8_weight_only": lambda: Int8WeightOnlyConfig(),
        "int4_weight_only": lambda: IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group_size)),
    }[scheme]()
    k, n = weight_kn.shape
    linear = torch.nn.Sequential(torch.nn.Linear(k, n, bias=False))
    with torch.no_grad():
        linear[0].weight.copy_(torch.from_numpy(np.ascontiguousarray(weight_kn.T)))
    quantize_(linear, config)
    w = linear[0].weight
    return (
        w.qdata.numpy().astype(np.int8),
        w.scale.float().numpy().reshape(n, -1),
        (w.zero_point.numpy() if w.zero_point is not None else np.zeros_like(w.scale.numpy())).astype(np.int8).reshape(n, -1),
    )


def pack_nibbles(values: np.ndarray) -> np.ndarray:
    """Two 4-bit values per byte, low nibble first, along the last axis (padded to even)."""
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros(values.shape[:-1] + (1,), values.dtype)], axis=-1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


def weight_matmuls(proto: Any, scheme: Scheme, group_size: int) -> list[Any]:
    """The MatMul nodes of ``proto`` with a 2-D constant weight (for int4, K a multiple of the
    group size): each is a Linear to torchao."""
    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    targets = [
        n for n in graph.node
        if n.op_type == "MatMul" and n.input[1] in initializers and len(initializers[n.input[1]].dims) == 2
    ]
    if scheme == "int4_weight_only":
        targets = [n for n in targets if initializers[n.input[1]].dims[0] % group_size == 0]
    return targets


def rewrite(
    proto: Any, targets: list[Any], scheme: Scheme, group_size: int, *, on_node: Callable[[int, str], None] | None = None
) -> None:
    """Replace each target MatMul of ``proto`` (in place) by torchao's quantization of its weight,
    as onnxruntime operators. ``on_node(i, name)`` before each node. PassNotApplicable when
    torchao's int8_dynamic weights are not symmetric (MatMulInteger needs them so)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    if scheme == "int4_weight_only" and not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))

    replaced: dict[str, list[Any]] = {}
    used_weights: set[str] = set()
    for i, node in enumerate(targets):
        if on_node is not None:
            on_node(i, node.name)
        weight = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        k, n = weight.shape
        codes, scales, zeros = torchao_codes(weight, scheme, group_size)
        tag = f"{node.name}__torchao"
        x, y = node.input[0], node.output[0]
        new: list[Any] = []
        if scheme == "int8_weight_only":
            graph.initializer.extend([
                numpy_helper.from_array(np.ascontiguousarray(codes.T), f"{tag}_w"),
                numpy_helper.from_array(scales[:, 0].astype(np.float32), f"{tag}_scale"),
                numpy_helper.from_array(zeros[:, 0], f"{tag}_zp"),
            ])
            new += [
                helper.make_node("DequantizeLinear", [f"{tag}_w", f"{tag}_scale", f"{tag}_zp"], [f"{tag}_wf"], name=f"{tag}_DQ", axis=1),
                helper.make_node("MatMul", [x, f"{tag}_wf"], [y], name=f"{tag}_MatMul"),
            ]
        elif scheme == "int8_dynamic":
            if np.any(zeros != 0):
                raise PassNotApplicable("torchao int8_dynamic gave asymmetric weights; MatMulInteger needs symmetric ones")
            graph.initializer.extend([
                numpy_helper.from_array(np.ascontiguousarray(codes.T), f"{tag}_w"),
                numpy_helper.from_array(scales[:, 0].astype(np.float32), f"{tag}_wscale"),
                numpy_helper.from_array(np.zeros(n, np.int8), f"{tag}_wzp"),
            ])
            new += [
                helper.make_node("DynamicQuantizeLinear", [x], [f"{tag}_xq", f"{tag}_xs", f"{tag}_xzp"], name=f"{tag}_DQL"),
                helper.make_node("MatMulInteger", [f"{tag}_xq", f"{tag}_w", f"{tag}_xzp", f"{tag}_wzp"], [f"{tag}_i32"], name=f"{tag}_MMI"),
                helper.make_node("Cast", [f"{tag}_i32"], [f"{tag}_f"], name=f"{tag}_Cast", to=onnx.TensorProto.FLOAT),
                helper.make_node("Mul", [f"{tag}_xs", f"{tag}_wscale"], [f"{tag}_s"], name=f"{tag}_ScaleMul"),
                helper.make_node("Mul", [f"{tag}_f", f"{tag}_s"], [y], name=f"{tag}_Mul"),
            ]
        else:
            blocks = k // group_size
            unsigned = (codes.astype(np.int16) + 8).astype(np.uint8).reshape(n, blocks, group_size)
            graph.initializer.extend([
                numpy_helper.from_array(pack_nibbles(unsigned), f"{tag}_B"),
                numpy_helper.from_array(scales.astype(np.float32).reshape(-1), f"{tag}_scales"),
                numpy_helper.from_array(pack_nibbles((zeros.astype(np.int16) + 8).astype(np.uint8)).reshape(-1), f"{tag}_zp"),
            ])
            new.append(
                helper.make_node(
                    "MatMulNBits", [x, f"{tag}_B", f"{tag}_scales", f"{tag}_zp"], [y], name=f"{tag}_MatMulNBits",
                    domain="com.microsoft", K=k, N=n, bits=4, block_size=group_size,
                )
            )
        replaced[node.name] = new
        used_weights.add(node.input[1])

    nodes = list(graph.node)
    del graph.node[:]
    for node in nodes:
        graph.node.extend(replaced.get(node.name, [node]))
    still_used = {i for node in graph.node for i in node.input}
    for name in used_weights - still_used:
        graph.initializer.remove(initializers[name])
