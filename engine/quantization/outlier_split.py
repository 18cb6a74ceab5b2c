"""Outlier channels of MatMul activations computed in float, the rest in int8 (LLM.int8()-style
decomposition, Dettmers et al. 2022), as an ONNX graph rewrite done before dynamic quantization.

Why: transformers carry a few hidden dimensions whose activations are 10-20x larger than the rest
(MiniLM-L6: per-channel max up to 30 for a median of 1.7 after LayerNorm, 25 vs 1.3 after GELU).
onnxruntime's dynamic int8 quantizes an activation with one range per tensor, so those few
channels set the step size for all others. Here, for each weight MatMul ``Y = X @ W``:

    Y = (X * keep_mask) @ W_rest  +  Gather(X, outliers) @ W[outliers, :]

The first product is quantized to int8 as usual; the second is a thin float MatMul (a handful of
rows), excluded from quantization. ``W_rest`` has the outlier rows zeroed, which also tightens
the per-channel weight scales. Outlier channels are found from activation ranges on calibration
inputs (the job's dataset, or inputs generated from the signature).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Split:
    float_nodes: list[str]  # the new float MatMuls, to exclude from quantization
    counts: dict[str, int]  # outlier channels per split activation


def activation_ranges(proto: Any, names: list[str], feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-channel (last axis) max |x| of the named float tensors of ``proto`` over the given
    inputs. The tensors are made graph outputs for the session and taken out again after it."""
    import onnx
    import onnxruntime as ort

    outputs = proto.graph.output
    kept = len(outputs)
    existing = {o.name for o in outputs}
    for name in names:
        if name not in existing:
            outputs.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    finally:
        del outputs[kept:]
    ranges: dict[str, np.ndarray] = {}
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed), strict=True):
            channel_max = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            ranges[name] = np.maximum(ranges[name], channel_max) if name in ranges else channel_max
    return ranges


def split_outliers(
    proto: Any,
    feeds: list[dict[str, np.ndarray]],
    *,
    ratio: float,
    max_channels: int,
    skip_nodes: set[str] | None = None,
) -> Split | None:
    """Rewrite ``proto`` in place; None when it has no weight MatMul to split (left as it is)."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        if (
            node.op_type == "MatMul"
            and node.input[1] in initializers
            and node.name not in (skip_nodes or set())
            and len(initializers[node.input[1]].dims) == 2
        ):
            consumers.setdefault(node.input[0], []).append(node)
    if not consumers:
        return None
    ranges = activation_ranges(proto, list(consumers), feeds)

    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    float_nodes: list[str] = []
    counts: dict[str, int] = {}
    tails: dict[str, list[Any]] = {}  # node name -> new nodes that go right after it
    inserted: dict[str, list[Any]] = {}  # activation name -> nodes to insert after its producer
    for act, nodes in consumers.items():
        channel_max = ranges[act]
        threshold = ratio * float(np.median(channel_max))
        candidates = np.argsort(-channel_max)[:max_channels]
        outliers = np.sort(candidates[channel_max[candidates] > threshold])
        if outliers.size == 0:
            continue
        counts[act] = int(outliers.size)
        tag = f"{act}__outl"
        mask = np.ones(channel_max.shape[0], dtype=np.float32)
        mask[outliers] = 0.0
        graph.initializer.append(numpy_helper.from_array(mask, f"{tag}_mask"))
        graph.initializer.append(numpy_helper.from_array(outliers.astype(np.int64), f"{tag}_idx"))
        new = [
            helper.make_node("Mul", [act, f"{tag}_mask"], [f"{tag}_rest"], name=f"{tag}_Mul"),
            helper.make_node("Gather", [act, f"{tag}_idx"], [f"{tag}_cols"], name=f"{tag}_Gather", axis=-1),
        ]
        for node in nodes:
            weight_init = initializers[node.input[1]]
            weight = numpy_helper.to_array(weight_init)
            rest = weight.copy()
            rest[outliers, :] = 0.0
            weight_init.CopyFrom(numpy_helper.from_array(rest.astype(weight.dtype), weight_init.name))
            rows_name = f"{node.name}__outl_w"
            graph.initializer.append(numpy_helper.from_array(weight[outliers, :].astype(weight.dtype), rows_name))
            node.input[0] = f"{tag}_rest"
            # Join the float part after the bias Add when there is one, so that onnxruntime still
            # fuses MatMulInteger + bias into DynamicQuantizeMatMul.
            anchor = node
            after = users.get(node.output[0], [])
            if (
                len(after) == 1
                and after[0].op_type == "Add"
                and after[0].name
                and any(i in initializers for i in after[0].input)
                and node.output[0] not in {o.name for o in graph.output}
            ):
                anchor = after[0]
            joined = anchor.output[0]
            anchor.output[0] = f"{joined}__int8part"
            float_name = f"{node.name}__outl_MatMul"
            float_nodes.append(float_name)
            tails.setdefault(anchor.name, []).extend([
                helper.make_node("MatMul", [f"{tag}_cols", rows_name], [f"{joined}__floatpart"], name=float_name),
                helper.make_node("Add", [f"{joined}__int8part", f"{joined}__floatpart"], [joined], name=f"{node.name}__outl_Add"),
            ])
        inserted[act] = new

    # Keep the graph topologically sorted: the Mul/Gather right after the producer of the
    # activation (first, for a graph input), the float MatMul and the Add right after the int8
    # MatMul or its bias Add.
    heads = inserted
    ordered: list[Any] = [n for act in inserted if act not in {o for m in graph.node for o in m.output} for n in heads[act]]
    for node in graph.node:
        ordered.append(node)
        for out in node.output:
            ordered.extend(heads.get(out, []))
        ordered.extend(tails.get(node.name, []))
    del graph.node[:]
    graph.node.extend(ordered)
    return Split(float_nodes, counts)
