"""Some tensors of an ONNX graph computed on their own, with onnxruntime on a graph of just their
ancestors: for facts a rewrite needs that the graph's structure does not show (what a mask
means, what a factor computed from shapes is worth; engine/quantization/sdpa_rewrite.py)."""

from __future__ import annotations

from typing import Any

import numpy as np


class Evaluator:
    """``outputs`` of ``proto`` for inputs of any size; ``proto`` is not changed."""

    def __init__(self, proto: Any, outputs: list[str]):
        import onnx

        graph = proto.graph
        producers = {o: n for n in graph.node for o in n.output}
        initializers = {t.name: t for t in graph.initializer}
        needed, nodes, seen = list(outputs), [], set()
        while needed:
            node = producers.get(needed.pop())
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            nodes.append(node)
            needed.extend(i for i in node.input if i)
        order = {id(n): i for i, n in enumerate(graph.node)}
        nodes.sort(key=lambda n: order[id(n)])
        used = {i for n in nodes for i in n.input} | set(outputs)
        self.inputs = [i for i in graph.input if i.name in used and i.name not in initializers]
        sub = onnx.helper.make_graph(
            nodes, "sub", self.inputs, [onnx.helper.make_empty_tensor_value_info(o) for o in outputs],
            [initializers[i] for i in used if i in initializers],
        )  # fmt: skip
        self.model = onnx.helper.make_model(sub, opset_imports=proto.opset_import, ir_version=proto.ir_version)
        self._session: Any = None

    def integer_inputs(self) -> bool:
        """Whether every input is a 2D integer (token-like) tensor, which zeros can stand for."""
        import onnx

        types = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.BOOL}
        return all(i.type.tensor_type.elem_type in types and len(i.type.tensor_type.shape.dim) == 2 for i in self.inputs)

    def shape(self, rows: int, seq: int) -> tuple[int, int]:
        """(rows, seq), or the sizes the inputs fix (an export with static shapes accepts no other)."""
        sizes = [rows, seq]
        for spec in self.inputs:
            for axis, dim in enumerate(spec.type.tensor_type.shape.dim[:2]):
                if dim.dim_value > 0:
                    sizes[axis] = dim.dim_value
        return sizes[0], sizes[1]

    def run(self, rows: int, seq: int, overrides: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """The outputs with every input zeros of ``shape(rows, seq)`` (token id 0 is valid
        everywhere), except ``overrides``."""
        import onnx
        import onnxruntime as ort

        if self._session is None:
            self._session = ort.InferenceSession(self.model.SerializeToString(), providers=["CPUExecutionProvider"])
        dtypes = {onnx.TensorProto.INT32: np.int32, onnx.TensorProto.BOOL: np.bool_}
        feeds = {}
        for spec in self.inputs:
            value = (overrides or {}).get(spec.name, np.zeros(self.shape(rows, seq), dtype=np.int64))
            feeds[spec.name] = value.astype(dtypes.get(spec.type.tensor_type.elem_type, np.int64))
        return self._session.run(None, feeds)
