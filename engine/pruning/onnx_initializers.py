"""Magnitude pruning straight on an ONNX graph's weight initializers, with no conversion.

For graphs that onnx2torch cannot convert, and when no fine-tuning is wanted. A weight is an
initializer that a Conv, ConvTranspose, Gemm or MatMul multiplies by (not a bias, not a shape);
its smallest magnitudes are set to zero, so deflate-compressed storage shrinks. ``prune_model``
is what ``prune.onnx_magnitude`` does to a model file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.context import PassContext
from engine.model import ModelFile
from engine.pruning.options import Scope

# Operator -> the input positions that hold a weight (the other operand is the activation).
WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "Conv": (1,),
    "ConvTranspose": (1,),
    "Gemm": (0, 1),
    "MatMul": (0, 1),
}


def weight_initializers(model: Any) -> list[Any]:
    """Float initializers with >= 2 dimensions that feed a weight input of a multiplying node."""
    from onnx import TensorProto

    by_name = {t.name: t for t in model.graph.initializer}
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
    picked: dict[str, Any] = {}
    for node in model.graph.node:
        for position in WEIGHT_INPUTS.get(node.op_type, ()):
            if position < len(node.input) and node.input[position] in by_name:
                tensor = by_name[node.input[position]]
                if tensor.data_type in floats and len(tensor.dims) >= 2:
                    picked[tensor.name] = tensor
    return list(picked.values())


def prune_initializers(model: Any, *, sparsity: float, scope: Scope) -> dict[str, Any]:
    """Zero the smallest-magnitude ``sparsity`` of the weights in place; returns what was done."""
    from onnx import numpy_helper

    tensors = weight_initializers(model)
    arrays = [numpy_helper.to_array(t) for t in tensors]
    if not arrays:
        return {"layers": 0, "prunable_params": 0, "zero_params": 0, "sparsity": 0.0}
    magnitudes = [np.abs(a.astype(np.float32)).ravel() for a in arrays]
    if scope == "global":
        everything = np.concatenate(magnitudes)
        cut = int(round(sparsity * everything.size))
        threshold = np.partition(everything, cut - 1)[cut - 1] if cut > 0 else -np.inf
        # Weights tied at the threshold are taken in order until exactly ``cut`` are zero.
        ties_left = cut - int((everything < threshold).sum())
    total = zeros = 0
    for tensor, arr, flat in zip(tensors, arrays, magnitudes, strict=True):
        drop = np.zeros(flat.size, dtype=bool)
        if scope == "global":
            drop |= flat < threshold
            at = np.flatnonzero(flat == threshold)[: max(0, ties_left)]
            drop[at] = True
            ties_left -= len(at)
        else:
            k = int(round(sparsity * flat.size))
            if k > 0:
                drop[np.argpartition(flat, k - 1)[:k]] = True
        pruned = arr.copy().ravel()
        pruned[drop] = 0
        tensor.CopyFrom(numpy_helper.from_array(pruned.reshape(arr.shape), tensor.name))
        total += arr.size
        zeros += int((pruned == 0).sum())
    return {
        "layers": len(tensors),
        "prunable_params": total,
        "zero_params": zeros,
        "sparsity": zeros / total,
    }


def prune_model(model: ModelFile, ctx: PassContext, *, sparsity: float, scope: Scope) -> ModelFile:
    """Prune the initializers of ``model`` into a copy in its own folder; reports into ``ctx``."""
    from engine.formats.onnx_model import load_proto, save_proto
    from engine.pruning.sparse_storage import storage_report

    proto = load_proto(model.path)
    applied = prune_initializers(proto, sparsity=sparsity, scope=scope)
    # Its own folder: a sparse model ships as a deflated zip of that folder (engine.job).
    dest = ctx.subdir("model") / "model.onnx"
    save_proto(proto, dest)
    out = model.with_path(dest, "onnx")
    storage = storage_report(model, out)
    ctx.add_report_section(
        "prune",
        {
            "method": "onnx_magnitude",
            "scope": scope,
            "layers": applied["layers"],
            "prunable_sparsity": applied["sparsity"],
            **storage,
        },
    )
    ctx.resolved["achieved_sparsity"] = round(applied["sparsity"], 4)
    return out.with_path(dest, sparsity=storage["sparsity"])
