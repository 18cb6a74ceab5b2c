"""Scaled-dot-product attention (SDPA) exports -> onnxruntime ``Attention`` nodes, matched here.

transformers' default attention (``sdpa``) exports each layer's attention differently from the
eager spelling onnxruntime's transformer optimizer matches (onnxruntime issue 23864): the scale
is split into two ``Mul`` by sqrt(scale), one on Q and one on K; the mask is a boolean 4D tensor
turned into ``Where(mask, 0, -inf)``; the softmax is followed by ``Where(IsNaN(p), 0, p)``; and
the dynamo exporter transposes K through two Reshapes and a Transpose. The optimizer finds none
of it, so the graph stayed unfused. Rather than re-spell every variant into the one the optimizer
knows, this module matches what all of them share and writes the ``Attention`` node itself:

    X -> MatMul(W) [-> Add(b)] -> Reshape/Transpose/Mul(scalar)...   (Q, K and V, the same X)
    MatMul(Q', K') [-> Add(mask bias)] -> Softmax [-> Where(IsNaN)] -> MatMul(., V')
        -> Transpose(0, 2, 1, 3) -> Reshape                           (the layer's output)

Only what the graph does not say by its structure is checked numerically, here: the mask bias
is computed on a few left-padded, right-padded and holed masks and must be 0 on the kept keys
and very negative on the masked ones, for every query and head (a key-padding mask, which is
what ``Attention``'s 2D ``mask_index`` means; a causal or other mask is refused). The K layout
and the scale are not proven here: the caller (``attention_fusion``) keeps the rewritten graph
only if its outputs match the original's, so a wrong match is discarded, never used.

One difference is accepted: a row whose mask is all zeros (no key to attend to) gets zeros from
SDPA's NaN guard and the mean of V from ``Attention``. Such a row has no real token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.quantization import subgraph

# A masked key must get a bias at least this negative (SDPA writes -inf, the eager spelling the
# dtype's minimum; either way exp() of it is 0).
_MASKED = -1e4
_MAX_LAYOUT_STEPS = 8


@dataclass
class Rewrite:
    applied: int = 0  # attention blocks now an Attention node
    reasons: list[str] = field(default_factory=list)  # why the others were not rewritten

    @property
    def reason(self) -> str | None:
        return "; ".join(dict.fromkeys(self.reasons)) or None


@dataclass
class _Projection:
    x: str
    weight: np.ndarray
    bias: np.ndarray
    scale: float = 1.0
    factors: list[str] = field(default_factory=list)  # computed scalar factors, resolved later
    reshape_shape: str | None = None  # the first Reshape after the projection: its head size


class _Graph:
    def __init__(self, proto: Any):
        self.proto = proto
        self.graph = proto.graph
        self.producers = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in self.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.initializers = {t.name: t for t in self.graph.initializer}

    def constant(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producers.get(name)
        if node is not None and node.op_type == "Identity":  # the legacy exporter's alias of a shared tensor
            return self.constant(node.input[0])
        if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def only_consumer(self, name: str, op_type: str) -> Any | None:
        """The one consumer of ``name``, not counting ``Shape`` nodes (the legacy exporter reads
        the sizes of the heads' merging Reshape from the tensors it merges; once that Reshape is
        replaced they are dead and removed, and were they not, they would still be right)."""
        users = [u for u in self.consumers.get(name, []) if u.op_type != "Shape"]
        if len(users) == 1 and users[0].op_type == op_type and name not in {o.name for o in self.graph.output}:
            return users[0]
        return None

    def shape_values(self, name: str) -> list[int | None] | None:
        """A Reshape's target shape as far as it is constant (None for a computed element)."""
        value = self.constant(name)
        if value is not None:
            return [int(v) for v in value.reshape(-1)]
        node = self.producers.get(name)
        if node is None or node.op_type != "Concat":
            return None
        values: list[int | None] = []
        for part in node.input:
            value = self.constant(part)
            # A computed part is a batch or sequence length read with Shape/Gather/Unsqueeze: one element.
            values.extend([int(v) for v in value.reshape(-1)] if value is not None else [None])
        return values


def _projection(graph: _Graph, name: str, steps: int = 0) -> _Projection | None:
    """Walk back from a Q/K/V operand of the attention MatMuls, through the layout ops the
    exporters put there, to the linear projection it comes from."""
    node = graph.producers.get(name)
    if node is None or steps > _MAX_LAYOUT_STEPS:
        return None
    if node.op_type in ("Add", "MatMul"):
        return _linear(graph, node)
    if node.op_type in ("Transpose", "Reshape"):
        found = _projection(graph, node.input[0], steps + 1)
        if found is not None and node.op_type == "Reshape" and found.reshape_shape is None:
            found.reshape_shape = node.input[1]
        return found
    if node.op_type != "Mul":
        return None
    for i, j in ((0, 1), (1, 0)):
        value = graph.constant(node.input[j])
        found = _projection(graph, node.input[i], steps + 1)
        if found is None:
            continue
        if value is not None and value.size == 1:
            found.scale *= float(value.reshape(-1)[0])
        elif value is None:
            # torch's older SDPA symbolic (Optimum's export) computes sqrt(1 / sqrt(head size))
            # from the tensor's shape at run time: resolved once all blocks are matched.
            found.factors.append(node.input[j])
        else:
            return None
        return found
    return None


def _linear(graph: _Graph, node: Any) -> _Projection | None:
    bias = None
    if node.op_type == "Add":
        for i, j in ((0, 1), (1, 0)):
            value = graph.constant(node.input[j])
            producer = graph.producers.get(node.input[i])
            if value is not None and value.ndim == 1 and producer is not None and producer.op_type == "MatMul":
                bias, node = value, producer
                break
        if bias is None:
            return None
    weight = graph.constant(node.input[1])
    if weight is None or weight.ndim != 2 or weight.dtype != np.float32:
        return None
    if bias is None:
        bias = np.zeros(weight.shape[1], dtype=np.float32)
    if bias.shape != (weight.shape[1],):
        return None
    return _Projection(node.input[0], weight, bias.astype(np.float32))


@dataclass
class _Match:
    q: _Projection
    k: _Projection
    v: _Projection
    mask_bias: str | None
    output: Any  # the Reshape whose output the Attention node takes over
    heads: int


def _match(graph: _Graph, softmax: Any) -> _Match | str:
    """The attention block around ``softmax``, or why it is not one this module rewrites."""
    axis = next((a.i for a in softmax.attribute if a.name == "axis"), -1)
    if axis not in (-1, 3):
        return "a Softmax not over the last axis"
    probs = softmax.output[0]
    users = graph.consumers.get(probs, [])
    if len(users) == 2 and {u.op_type for u in users} == {"IsNaN", "Where"}:
        isnan = next(u for u in users if u.op_type == "IsNaN")
        guard = next(u for u in users if u.op_type == "Where")
        zero = graph.constant(guard.input[1])
        if list(guard.input) != [isnan.output[0], guard.input[1], probs] or zero is None or np.any(zero != 0):
            return "an unrecognised guard after Softmax"
        probs = guard.output[0]
    context = graph.only_consumer(probs, "MatMul")
    if context is None or context.input[0] != probs:
        return "Softmax is not followed by a MatMul with V"
    heads_out = context.output[0]
    restate = graph.only_consumer(heads_out, "Reshape")
    shape = graph.shape_values(restate.input[1]) if restate is not None else None
    if shape is not None and len(shape) == 4:  # the legacy SDPA export restates (batch, heads, seq, head size)
        heads_out = restate.output[0]
    transpose = graph.only_consumer(heads_out, "Transpose")
    perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None) if transpose else None
    merge = graph.only_consumer(transpose.output[0], "Reshape") if transpose and perm == [0, 2, 1, 3] else None
    if merge is None:
        return "the heads are not merged by Transpose(0, 2, 1, 3) + Reshape"

    scores = graph.producers.get(softmax.input[0])
    mask_bias = None
    if scores is not None and scores.op_type == "Add":
        for i, j in ((0, 1), (1, 0)):
            producer = graph.producers.get(scores.input[i])
            if producer is not None and producer.op_type == "MatMul":
                mask_bias, scores = scores.input[j], producer
                break
    if scores is None or scores.op_type != "MatMul":
        # The eager spelling divides the scores after the MatMul; onnxruntime's own fusion takes it.
        return "the Softmax input is not MatMul(Q, K) [+ mask] (not SDPA's spelling)"
    q, k, v = (_projection(graph, name) for name in (scores.input[0], scores.input[1], context.input[1]))
    if q is None or k is None or v is None:
        return "Q, K or V is not a constant linear projection followed by reshapes and transposes"
    if not q.x == k.x == v.x:
        return "Q, K and V are projections of different inputs (cross-attention)"
    if not q.weight.shape == k.weight.shape == v.weight.shape or v.scale != 1.0 or v.factors:
        return "Q, K and V projections differ in width, or V is scaled"
    width = q.weight.shape[1]
    shape = graph.shape_values(q.reshape_shape) if q.reshape_shape else None
    if not shape or len(shape) != 4:
        return "the head count cannot be read from Q's reshape"
    heads = shape[2] if shape[2] and shape[2] > 0 else (width // shape[3] if shape[3] and shape[3] > 0 and width % shape[3] == 0 else None)
    if not heads or width % heads:
        return "the head count cannot be read from Q's reshape"
    return _Match(q, k, v, mask_bias, merge, int(heads))


def _key_padding_input(graph: _Graph, bias: str) -> tuple[str | None, str | None]:
    """(the 2D mask input ``bias`` is a key-padding mask of, None), or (None, why not): the bias
    is computed on a few masks and compared with that meaning."""
    evaluator = subgraph.Evaluator(graph.proto, [bias])
    masks = [i for i in evaluator.inputs if "mask" in i.name.lower()] or evaluator.inputs
    if len(masks) != 1:
        return None, "the mask bias does not come from one attention-mask input"
    if not evaluator.integer_inputs():
        return None, "the mask bias depends on an input that is not a 2D integer tensor"
    rows, seq = evaluator.shape(4, 7)
    if seq < 6:
        return None, "the sequence is too short to tell a padding mask from others"
    # Left padding, right padding and a hole in every row (a fixed batch size may allow one),
    # their lengths varied by row.
    mask = np.ones((rows, seq), dtype=np.int64)
    for row in range(rows):
        mask[row, : (row + 1) % 3] = 0
        mask[row, seq - 1 - row % 2 :] = 0
        mask[row, seq // 2] = 0
    try:
        value = evaluator.run(rows, seq, {masks[0].name: mask})[0]
    except Exception as exc:  # noqa: BLE001 - any failure means "not shown", never an error
        return None, f"the mask bias could not be evaluated ({type(exc).__name__})"
    if value.ndim != 4 or value.shape[0] not in (1, rows) or value.shape[2] not in (1, seq) or value.shape[3] != seq:
        return None, f"the mask bias has shape {list(value.shape)}, not (batch, 1 or heads, 1 or seq, seq)"
    value = np.broadcast_to(value, (rows, value.shape[1], seq, seq))
    keep = np.broadcast_to(mask[:, None, None, :] != 0, value.shape)
    if np.all(value[keep] == 0) and np.all(value[~keep] <= _MASKED):
        return masks[0].name, None
    return None, "the mask is not a key-padding mask (causal, or another pattern)"


def _resolve_factors(graph: _Graph, matches: list[_Match]) -> str | None:
    """Fold the computed scale factors into each match's scale: every one must be a scalar that
    does not change with the batch or sequence size (it comes from the head size). All are
    computed in one run, the layers' subgraphs overlapping."""
    names = sorted({f for m in matches for p in (m.q, m.k) for f in p.factors})
    if not names:
        return None
    evaluator = subgraph.Evaluator(graph.proto, names)
    if not evaluator.integer_inputs():
        return "a computed attention scale depends on an input that is not a 2D integer tensor"
    try:
        small, large = evaluator.run(2, 5), evaluator.run(3, 9)
    except Exception as exc:  # noqa: BLE001
        return f"a computed attention scale could not be evaluated ({type(exc).__name__})"
    values = {}
    for name, a, b in zip(names, small, large, strict=True):
        if a.size != 1 or b.size != 1 or float(a.reshape(-1)[0]) != float(b.reshape(-1)[0]):
            return "a computed attention scale is not one number for every input size"
        values[name] = float(a.reshape(-1)[0])
    for m in matches:
        for p in (m.q, m.k):
            p.scale *= float(np.prod([values[f] for f in p.factors]))
            p.factors = []
    return None


def rewrite(proto: Any) -> Rewrite:
    """Replace, in place, each SDPA-spelled self-attention block of ``proto`` by one
    ``com.microsoft.Attention`` node (2D mask, the graph's own scale and head count)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = _Graph(proto)
    result = Rewrite()
    mask_inputs: dict[str, tuple[str | None, str | None]] = {}  # the layers share one mask bias
    matches: list[tuple[_Match, str | None]] = []
    for softmax in [n for n in graph.graph.node if n.op_type == "Softmax"]:
        match = _match(graph, softmax)
        if isinstance(match, str):
            result.reasons.append(match)
            continue
        mask_name = None
        if match.mask_bias is not None:
            if match.mask_bias not in mask_inputs:
                mask_inputs[match.mask_bias] = _key_padding_input(graph, match.mask_bias)
            mask_name, why = mask_inputs[match.mask_bias]
            if mask_name is None:
                result.reasons.append(why or "mask")
                continue
        matches.append((match, mask_name))
    failed = _resolve_factors(graph, [m for m, _ in matches])
    if failed:
        result.reasons.append(failed)
        return result

    mask_index: dict[str, str] = {}
    casts: list[Any] = []
    replaced: dict[int, Any] = {}  # id of the heads' merging Reshape -> the Attention node
    for match, mask_name in matches:
        prefix = f"SdpaAttention_{result.applied}"
        weight = numpy_helper.from_array(np.concatenate([match.q.weight, match.k.weight, match.v.weight], axis=1), f"{prefix}_qkv_weight")
        bias = numpy_helper.from_array(np.concatenate([match.q.bias, match.k.bias, match.v.bias]), f"{prefix}_qkv_bias")
        proto.graph.initializer.extend([weight, bias])
        inputs = [match.q.x, weight.name, bias.name]
        if mask_name is not None:
            if mask_name not in mask_index:
                mask_index[mask_name] = f"{mask_name}_mask_index_int32"
                casts.append(helper.make_node("Cast", [mask_name], [mask_index[mask_name]], to=onnx.TensorProto.INT32, name=f"{mask_name}_mask_index"))
            inputs.append(mask_index[mask_name])
        replaced[id(match.output)] = helper.make_node(
            "Attention", inputs, [match.output.output[0]], name=prefix, domain="com.microsoft",
            num_heads=match.heads, scale=match.q.scale * match.k.scale,
        )  # fmt: skip
        result.applied += 1
    if result.applied:
        _set_nodes(proto, casts + [replaced.get(id(n), n) for n in graph.graph.node])
        _remove_dead(proto)
        if not any(o.domain == "com.microsoft" for o in proto.opset_import):
            proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return result


def _set_nodes(proto: Any, nodes: list[Any]) -> None:
    copies = [type(n)() for n in nodes]
    for copy, node in zip(copies, nodes, strict=True):
        copy.CopyFrom(node)
    del proto.graph.node[:]
    proto.graph.node.extend(copies)


def _remove_dead(proto: Any) -> None:
    """Drop the replaced blocks: nodes none of whose outputs is used, and unused initializers."""
    graph = proto.graph
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        live = [n for n in graph.node if any(o in used for o in n.output)]
        if len(live) == len(graph.node):
            break
        _set_nodes(proto, live)
    used = {i for n in graph.node for i in n.input} | outputs
    inputs = {i.name for i in graph.input}
    for tensor in [t for t in graph.initializer if t.name not in used and t.name not in inputs]:
        graph.initializer.remove(tensor)
