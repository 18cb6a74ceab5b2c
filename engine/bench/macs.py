"""Multiply-accumulates (MACs) of one inference, counted from the shapes the model really sees.

- PyTorch models: ``torch.utils.flop_counter.FlopCounterMode`` (built into torch; counts matmuls,
  convolutions and attention kernels as they dispatch). MACs = FLOPs / 2.
- ONNX graphs: the shape of every operand is taken from one onnxruntime run at batch size 1 that
  exposes the intermediate tensors, and MACs are counted for the operators that hold nearly all of
  them: MatMul, Gemm, Conv, ConvTranspose, their quantized forms (MatMulInteger, QLinearMatMul,
  ConvInteger, QLinearConv, DynamicQuantizeMatMul, MatMulIntegerToFloat, MatMulNBits,
  FusedMatMul, FusedConv, FusedGemm). Elementwise operators, normalizations and softmax are not
  counted (as in the PyTorch counter).

Why not a library for ONNX: onnx-tool 1.0.1 (the maintained ONNX profiler on PyPI) stops on the
MiniLM export (``IsNaN`` has no shape inference there) and does not know onnxruntime's quantized
contrib operators; ``onnx.shape_inference`` loses the batch dimension behind the Reshape chains of
a transformer export. The shapes of a real run are exact for every operator onnxruntime can run.
"""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np

from engine.model import ModelFile

# Operator -> how to count it. "matmul": outputs x K (K = last dim of the first operand).
_MATMUL_OPS = {
    "MatMul",
    "MatMulInteger",
    "QLinearMatMul",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "FusedMatMul",
    "MatMulNBits",
    "MatMulBnb4",
}
_GEMM_OPS = {"Gemm", "FusedGemm", "QGemm"}
_CONV_OPS = {"Conv", "ConvInteger", "QLinearConv", "FusedConv", "NhwcConv"}
_CONV_TRANSPOSE_OPS = {"ConvTranspose"}
COUNTED_OPS = sorted(_MATMUL_OPS | _GEMM_OPS | _CONV_OPS | _CONV_TRANSPOSE_OPS)

# Where the weight operand sits, for the quantized forms that carry scales and zero points.
_WEIGHT_INPUT = {"QLinearConv": 3, "QLinearMatMul": 3}
_DATA_INPUT = {"QLinearConv": 0, "QLinearMatMul": 0}


def count_macs(model: ModelFile, runner: Any, feed: dict[str, np.ndarray]) -> dict[str, Any]:
    """MACs of one inference on ``feed`` (batch size 1), and FLOPs = 2 x MACs.

    Never raises: a model we cannot count gets ``macs: None`` and the reason, since a missing
    count must not fail the benchmark the user is waiting for.
    """
    try:
        if hasattr(runner, "torch_call"):
            macs, method = _torch_macs(runner, feed), "torch.utils.flop_counter.FlopCounterMode"
        elif model.format == "onnx":
            macs, method = _onnx_macs(model, feed), "onnxruntime shapes + per-operator count"
        else:
            return {"macs": None, "flops": None, "macs_error": f"no MAC counter for format {model.format}"}
    except Exception as exc:  # noqa: BLE001 - reported, not raised (see docstring)
        return {"macs": None, "flops": None, "macs_error": f"{type(exc).__name__}: {exc}"[:500]}
    shapes = {k: list(v.shape) for k, v in feed.items()}
    return {"macs": int(macs), "flops": int(2 * macs), "macs_method": method, "macs_input_shapes": shapes}


def _torch_macs(runner: Any, feed: dict[str, np.ndarray]) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module, args = runner.torch_call(feed)
    counter = FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas())
    with torch.inference_mode(), counter:
        if isinstance(args, dict):
            module(**args)
        else:
            module(*args)
    return counter.get_total_flops() // 2


def _cpu_attention_formulas() -> dict[Any, Any]:
    """torch 2.13's counter knows the CUDA attention kernels, but on the CPU it sees
    ``aten.scaled_dot_product_attention`` itself (or its CPU flash kernel) and counts nothing: a
    transformer's attention matmuls went uncounted (MiniLM-L6 at 64 tokens: 18.9M of 698M MACs).
    Count them with torch's own SDPA formula."""
    import torch
    from torch.utils.flop_counter import sdpa_flop_count

    def cpu_flash(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return sdpa_flop_count(query, key, value)

    formulas = {}
    for name in ("scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu"):
        op = getattr(torch.ops.aten, name, None)
        if op is not None:
            formulas[op] = cpu_flash  # the counter looks formulas up by overload packet
    return formulas


def _onnx_macs(model: ModelFile, feed: dict[str, np.ndarray]) -> int:
    import onnx
    import onnxruntime as ort

    from engine.formats.onnx_model import load_proto

    proto = load_proto(model.path)
    if proto.ByteSize() > (1 << 31) - 1:
        raise ValueError("the model is over 2 GiB; MACs are not counted for it")
    constants = {t.name: list(t.dims) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = list(attr.t.dims)
    counted = [n for n in proto.graph.node if n.op_type in COUNTED_OPS]
    if not counted:
        return 0
    wanted: list[str] = []
    known_outputs = {o.name for o in proto.graph.output}
    for node in counted:
        for name in [*node.input, *node.output]:
            if name and name not in constants and name not in feed and name not in wanted:
                wanted.append(name)
    for name in wanted:
        if name not in known_outputs:
            proto.graph.output.append(onnx.ValueInfoProto(name=name))
    opts = ort.SessionOptions()
    # Unoptimized, so that every tensor keeps its name (fusion would rename or remove them).
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])
    values = session.run(wanted, feed)
    shapes: dict[str, list[int]] = {**constants, **{k: list(v.shape) for k, v in feed.items()}}
    shapes.update({name: list(v.shape) for name, v in zip(wanted, values, strict=True)})
    return sum(_node_macs(node, shapes) for node in counted)


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _node_macs(node: Any, shapes: dict[str, list[int]]) -> int:
    op = node.op_type
    out = shapes.get(node.output[0])
    if out is None:
        return 0
    data = shapes.get(node.input[_DATA_INPUT.get(op, 0)])
    if op in _MATMUL_OPS:
        if op == "MatMulNBits":
            k = int(_attr(node, "K", data[-1] if data else 0))
        else:
            k = data[-1] if data else 0
            if op == "FusedMatMul" and _attr(node, "transA", 0) and data and len(data) >= 2:
                k = data[-2]
        return prod(out) * int(k)
    if op in _GEMM_OPS:
        k = (data[0] if _attr(node, "transA", 0) else data[1]) if data and len(data) == 2 else 0
        return prod(out) * int(k)
    weight = shapes.get(node.input[_WEIGHT_INPUT.get(op, 1)])
    if not weight:
        return 0
    if op in _CONV_OPS:
        # weight [M, C/group, k1, k2, ...]: each output element needs C/group x k1 x k2 ... MACs
        return prod(out) * prod(weight[1:])
    if op in _CONV_TRANSPOSE_OPS and data:
        # weight [C, M/group, k...]: each input element is spread over M/group x k... outputs
        return prod(data) * prod(weight[1:])
    return 0
