"""SVD of ONNX MatMul/Gemm weight initializers, done on the graph with the onnx API.

``Y = X @ W`` becomes ``Y = (X @ A) @ B`` with two new initializers, and ``Gemm(X, W, C)``
becomes ``Gemm(X @ A, B, C)``; no conversion to PyTorch is needed, so this works for any graph
onnxruntime runs (transformer exports included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.lowrank import ranks as rank_rules
from engine.lowrank.linear_svd import is_ffn_shape, svd_factors
from engine.lowrank.options import Target, excluded_by


@dataclass
class WeightUse:
    node: Any
    initializer: Any
    transposed: bool  # Gemm with transB=1 stores W as [N, K]

    @property
    def name(self) -> str:
        return self.initializer.name


def weight_uses(
    model: Any, *, target: Target, exclude: list[str], min_features: int
) -> list[WeightUse]:
    """MatMul/Gemm nodes whose weight is a 2-D float initializer used by that node alone."""
    from onnx import TensorProto

    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    excluded = excluded_by(exclude)
    uses = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            continue
        init = inits.get(node.input[1])
        if (
            init is None
            or len(init.dims) != 2
            or init.data_type != TensorProto.FLOAT
            or consumers[init.name] != 1
        ):
            continue
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Gemm" and "transA" in attrs and attrs["transA"].i:
            continue
        if min(init.dims) < min_features or excluded(node.name, init.name):
            continue
        if target == "ffn" and not is_ffn_shape(int(init.dims[0]), int(init.dims[1]), None):
            continue
        transposed = node.op_type == "Gemm" and "transB" in attrs and bool(attrs["transB"].i)
        uses.append(WeightUse(node, init, transposed))
    return uses


def spectrum(use: WeightUse) -> rank_rules.Spectrum:
    from onnx import numpy_helper

    w = numpy_helper.to_array(use.initializer)
    s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    return rank_rules.Spectrum(use.name, s, int(w.size), int(sum(w.shape)))


def factorize(
    model: Any, uses: list[WeightUse], chosen: dict[str, int | None]
) -> list[dict[str, Any]]:
    """Rewrite the graph in place; returns what was done, layer by layer."""
    from onnx import helper, numpy_helper

    done = []
    new_nodes = []
    by_node = {id(u.node): (u, rank) for u in uses if (rank := chosen.get(u.name))}
    for node in model.graph.node:
        if id(node) not in by_node:
            new_nodes.append(node)
            continue
        use, rank = by_node[id(node)]
        w = numpy_helper.to_array(use.initializer).astype(np.float64)
        if use.transposed:
            w = w.T  # now [K, N]: Y = X @ w
        left, right = svd_factors(w, rank)  # w ~ left [K, r] @ right [r, N]
        a_name, b_name, mid = (
            f"{use.name}.lowrank_a",
            f"{use.name}.lowrank_b",
            f"{node.name or use.name}.lowrank_out",
        )
        model.graph.initializer.append(numpy_helper.from_array(left.float().numpy(), a_name))
        model.graph.initializer.append(numpy_helper.from_array(right.float().numpy(), b_name))
        new_nodes.append(
            helper.make_node(
                "MatMul", [node.input[0], a_name], [mid], name=f"{node.name}.lowrank_a"
            )
        )
        if node.op_type == "MatMul":
            new_nodes.append(
                helper.make_node("MatMul", [mid, b_name], list(node.output), name=node.name)
            )
        else:
            attrs = {
                a.name: helper.get_attribute_value(a)
                for a in node.attribute
                if a.name not in ("transA", "transB")
            }
            new_nodes.append(
                helper.make_node(
                    "Gemm",
                    [mid, b_name, *node.input[2:]],
                    list(node.output),
                    name=node.name,
                    **attrs,
                )
            )
        model.graph.initializer.remove(use.initializer)
        k, n = w.shape
        done.append(
            {
                "layer": node.name or use.name,
                "shape": [k, n],
                "rank": rank,
                "params": rank * (k + n),
                "dense_params": k * n,
            }
        )
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return done
