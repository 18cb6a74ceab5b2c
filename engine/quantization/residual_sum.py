"""Residual sums before a LayerNormalization as one ``Sum`` node, never onnxruntime's
``SkipLayerNormalization``.

Why: onnxruntime's CPU ``SkipLayerNormalization`` kernel (float) normalizes in a scalar loop with
a division per element (``contrib_ops/cpu/skip_layer_norm.cc``), where ``LayerNormalization``
multiplies by one inverse per row. Measured at MiniLM's shape (batch 8 x 64 tokens x 384):
1,141 us for SkipLayerNormalization against 262 us for Sum + LayerNormalization with one thread,
573 against 185 us with two (``bench/residual_sum.py``). In the int8 MiniLM at batch 8 the
twelve of them were about a tenth of the run.

onnxruntime makes the slow node two ways, and this rewrite undoes both:

- the transformer optimizer (``attention_fusion``) writes ``SkipLayerNormalization`` into the
  file: each is replaced by ``Sum(input, skip, bias)`` and a ``LayerNormalization`` (ONNX opset
  17);
- a session's own graph optimizer fuses ``Add -> Add -> LayerNormalization`` at load time when it
  can prove the shapes match: each ``Add`` that only feeds a LayerNormalization's input (and each
  ``Add`` that only feeds such a sum) becomes part of one ``Sum``. The load-time fusion matches
  the op type ``Add`` alone, so the model stays fast on any onnxruntime session the user builds.

The result is the same function up to float rounding of the additions.
"""

from __future__ import annotations

from typing import Any

_MS = "com.microsoft"


def _default_opset(proto: Any) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def rewrite(proto: Any) -> int:
    """Rewrite ``proto`` in place; returns how many normalizations now read a ``Sum``."""
    from onnx import helper

    if _default_opset(proto) < 17:  # LayerNormalization is an ONNX op from opset 17
        return 0
    graph = proto.graph
    graph_outputs = {o.name for o in graph.output}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1

    nodes: list[Any] = []
    for node in graph.node:
        if node.op_type != "SkipLayerNormalization" or node.domain != _MS:
            nodes.append(node)
            continue
        outputs = list(node.output) + [""] * (4 - len(node.output))
        if any(outputs[i] and (consumers.get(outputs[i]) or outputs[i] in graph_outputs) for i in (1, 2)):  # mean / inv_std_var are read
            nodes.append(node)
            continue
        inputs = list(node.input) + [""] * (5 - len(node.input))
        # Named after the output: unique in any valid graph, which node names need not be.
        summed = outputs[3] or f"{outputs[0]}__sum"
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        nodes.append(helper.make_node("Sum", [i for i in (inputs[0], inputs[1], inputs[4]) if i], [summed], name=f"{outputs[0]}__Sum"))
        nodes.append(
            helper.make_node(
                "LayerNormalization", [i for i in (summed, inputs[2], inputs[3]) if i], [outputs[0]],
                name=f"{outputs[0]}__LayerNorm", axis=-1, epsilon=epsilon,
            )
        )  # fmt: skip
        consumers[summed] = consumers.get(summed, 0) + 1

    producers = {out: node for node in nodes for out in node.output}
    removed: set[int] = set()

    def _absorbable(name: str) -> Any:
        """The plain Add that makes ``name``, when nothing else reads it."""
        node = producers.get(name)
        if node is None or node.op_type != "Add" or node.domain not in ("", "ai.onnx"):
            return None
        if consumers.get(name) != 1 or name in graph_outputs:
            return None
        return node

    count = 0
    for node in nodes:
        if node.op_type != "LayerNormalization" or node.domain not in ("", "ai.onnx"):
            continue
        head = producers.get(node.input[0])
        if head is None or id(head) in removed:
            continue
        if head.op_type == "Add" and _absorbable(node.input[0]) is not None:
            head.op_type = "Sum"
        elif head.op_type != "Sum":
            continue
        # Flatten the Adds that only feed this sum (the bias Add after a MatMul, the float part of
        # an outlier split) into it: one pass over the activations instead of one per Add.
        terms = list(head.input)
        changed = True
        while changed:
            changed = False
            for i, term in enumerate(terms):
                inner = _absorbable(term)
                if inner is not None and id(inner) not in removed:
                    removed.add(id(inner))
                    terms[i : i + 1] = list(inner.input)
                    changed = True
                    break
        del head.input[:]
        head.input.extend(terms)
        count += 1

    del graph.node[:]
    graph.node.extend(n for n in nodes if id(n) not in removed)
    return count
