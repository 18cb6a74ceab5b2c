"""onnxruntime's transformer fusions before int8: one ``Attention`` node per layer.

An encoder exported from PyTorch spells each attention as some twenty small ops (reshapes,
transposes, two batched MatMuls, softmax, mask arithmetic). onnxruntime's transformer optimizer
(``onnxruntime.transformers.optimizer``) rewrites them into its ``Attention`` kernel, and the
dynamic quantizer turns that into ``QAttention`` (the Q/K/V projections as one int8 GEMM).
docs/methods/quantize.md and docs/benchmarks.md have the measured effect on MiniLM-L6.

Four things are done beyond calling the optimizer:

- **SDPA exports are matched here** (``sdpa_rewrite``). transformers' default attention
  (``sdpa``) exports a spelling the optimizer does not match (onnxruntime issue 23864), through
  either of torch's exporters and as ``optimum-cli export onnx`` writes it. ``sdpa_rewrite``
  replaces each such block by an ``Attention`` node before the optimizer runs; the optimizer
  then fuses LayerNorm/Gelu around them as it does for the eager spelling, which it matches
  itself.
- **The attention mask stays a 2D mask** (``AttentionMaskFormat.AttentionMask``). The optimizer's
  default turns it into one length per row, which assumes right padding: on left-padded rows, or
  masks with holes, MiniLM's outputs moved by up to 2.2. The 2D mask is exact for any mask.
- **The head count is written into the Q/K/V reshapes.** transformers reshapes to
  ``(batch, sequence, -1, head_size)``; the optimizer cannot read a head count from ``-1`` and
  gives up. The ``-1`` resolves to the projection's width over the head size, so writing that
  number in changes nothing, and it is per layer, so head-pruned models (layers with different
  head counts) fuse too.
- **The fused graph is kept only if it is the same function**: its outputs must match the input
  graph's on the evaluation inputs. Otherwise the unfused graph is used. This guards the SDPA
  rewrite as much as the optimizer's own fusions.

Only BERT-style encoders (``model_type="bert"``: BERT, RoBERTa, MiniLM, DistilBERT-like) are
tried. ``attempt_fusion`` also says, per rewrite, whether it applied and why not (the job's
``resolved["rewrites"]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.quantization import sdpa_rewrite

# Relative to the largest output magnitude: float reassociation inside the fused kernels moves
# MiniLM's outputs by about 1e-6 of that; a wrong fusion moves them by order 1.
_TOLERANCE = 1e-3


@dataclass
class Fusion:
    path: Path
    fused: dict[str, int]
    model: Any  # the fused graph, as saved at ``path``


@dataclass
class Attempt:
    fusion: Fusion | None
    # Each rewrite tried, as the job's ``resolved["rewrites"]`` reports it:
    # {"applied": bool, ...what it did, or "reason": why not}.
    rewrites: dict[str, dict[str, Any]] = field(default_factory=dict)


def fuse_attention(src: Path, dest: Path, feeds: list[dict[str, np.ndarray]], *, proto: Any = None) -> Fusion | None:
    """``dest`` with Attention (and LayerNorm/Gelu) fused, or None when nothing fused or the fused
    graph's outputs differ from ``src``'s on ``feeds``. ``proto``: ``src`` already in memory (it is
    left unchanged)."""
    return attempt_fusion(src, dest, feeds, proto=proto).fusion


def attempt_fusion(src: Path, dest: Path, feeds: list[dict[str, np.ndarray]], *, proto: Any = None) -> Attempt:
    """``fuse_attention``, saying which rewrites applied and why the others did not."""
    import onnx
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    from engine.formats import onnx_model

    if proto is None:
        graph = onnx_model.load_proto(src)
    else:  # the head counts are written into, and the optimizer rewrites, the graph it is given
        graph = onnx.ModelProto()
        graph.CopyFrom(proto)
    result = Attempt(None)
    if not any(n.op_type == "Softmax" for n in graph.graph.node):
        result.rewrites["attention_fusion"] = {"applied": False, "reason": "the graph has no Softmax (no attention)"}
        return result
    try:
        sdpa = sdpa_rewrite.rewrite(graph)
    except Exception as exc:  # noqa: BLE001 - a graph it did not foresee: the optimizer alone, on the graph as it was
        sdpa = sdpa_rewrite.Rewrite(reasons=[f"the rewrite failed: {type(exc).__name__}: {exc}"[:300]])
        graph.CopyFrom(proto if proto is not None else onnx_model.load_proto(src))
    result.rewrites["sdpa_attention"] = (
        {"applied": True, "attention_blocks": sdpa.applied} | ({"not_rewritten": sdpa.reason} if sdpa.reason else {})
        if sdpa.applied
        else {"applied": False, "reason": sdpa.reason or "no attention block"}
    )
    _write_head_counts(graph)
    options = FusionOptions("bert")
    options.attention_mask_format = AttentionMaskFormat.AttentionMask
    try:
        optimized = optimize_model(graph, model_type="bert", num_heads=0, hidden_size=0, opt_level=0, optimization_options=options)
    except Exception as exc:  # noqa: BLE001 - the unfused graph is quantized instead
        result.rewrites["attention_fusion"] = {"applied": False, "reason": f"onnxruntime's transformer optimizer failed: {type(exc).__name__}: {exc}"[:300]}
        return result
    fused = {op: int(n) for op, n in optimized.get_fused_operator_statistics().items() if n}
    if not fused.get("Attention"):
        result.rewrites["attention_fusion"] = {"applied": False, "reason": "no attention matched (neither SDPA's spelling nor onnxruntime's patterns)", "fused": fused}
        return result
    onnx_model.save_proto(optimized.model, dest)
    if not _same_function(src, dest, feeds):
        dest.unlink(missing_ok=True)
        result.rewrites["attention_fusion"] = {"applied": False, "reason": "the fused graph's outputs differ from the original's on the evaluation inputs", "fused": fused}
        return result
    result.rewrites["attention_fusion"] = {"applied": True, "fused": fused}
    result.fusion = Fusion(dest, fused, optimized.model)
    return result


def _write_head_counts(proto) -> None:
    """Replace the ``-1`` head count of each Q/K/V reshape by projection width / head size."""
    from onnx import numpy_helper

    graph = proto.graph
    producers = {o: n for n in graph.node for o in n.output}
    initializers = {t.name: t for t in graph.initializer}

    def constant(name: str) -> np.ndarray | None:
        if name in initializers:
            return numpy_helper.to_array(initializers[name])
        node = producers.get(name)
        if node is not None and node.op_type == "Identity":  # the exporter's alias for a shared tensor
            return constant(node.input[0])
        if node is not None and node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def projection_width(name: str) -> int | None:
        node = producers.get(name)
        if node is not None and node.op_type == "Add":
            for operand in node.input:
                value = constant(operand)
                if value is not None and value.ndim == 1:
                    return int(value.shape[0])
        if node is not None and node.op_type == "MatMul":
            weight = constant(node.input[1])
            if weight is not None and weight.ndim == 2:
                return int(weight.shape[1])
        return None

    for node in list(graph.node):
        if node.op_type != "Reshape":
            continue
        concat = producers.get(node.input[1])
        if concat is None or concat.op_type != "Concat" or len(concat.input) != 4:
            continue
        heads, head_size = constant(concat.input[2]), constant(concat.input[3])
        width = projection_width(node.input[0])
        if heads is None or head_size is None or width is None or heads.size != 1 or head_size.size != 1:
            continue
        size = int(head_size.reshape(-1)[0])
        if int(heads.reshape(-1)[0]) != -1 or size <= 0 or width % size:
            continue
        count = numpy_helper.from_array(np.array([width // size], dtype=heads.dtype), f"{node.name}_head_count")
        graph.initializer.append(count)
        concat.input[2] = count.name


def _same_function(src: Path, dest: Path, feeds: list[dict[str, np.ndarray]]) -> bool:
    from engine.quantization import onnx_quant

    for ref_outputs, got_outputs in zip(onnx_quant.run_outputs(src, feeds), onnx_quant.run_outputs(dest, feeds), strict=True):
        for ref, got in zip(ref_outputs, got_outputs, strict=True):
            if ref.shape != got.shape:
                return False
            scale = max(float(np.abs(ref).max()), 1e-6)
            if float(np.abs(ref.astype(np.float64) - got).max()) > _TOLERANCE * scale:
                return False
    return True
