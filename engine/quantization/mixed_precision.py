"""Mixed precision by sensitivity: dynamic int8 everywhere except the layers that hurt most.

1. The whole model is quantized and its output compared with the float model's (cosine) on the
   given inputs: the job's dataset, or inputs generated from the signature.
2. While the cosine misses the target, each weight MatMul/Gemm is quantized alone and its effect
   on the output measured (``sensitivity``), and the most sensitive layers are kept in float (the
   count predicted from the per-layer drops, then checked on the real quantized model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.context import PassContext
from engine.formats import onnx_model
from engine.quantization import onnx_quant, sensitivity


@dataclass
class MixedResult:
    path: Path
    kept_float: list[str]
    fidelity: dict[str, Any]
    sensitivities: list[sensitivity.LayerSensitivity]
    met_target: bool
    reference: Any  # the float model's outputs on the feeds, what ``fidelity`` compared with


def _meets(result: dict[str, Any], target: float, target_min: float | None) -> bool:
    if result["cosine_mean"] < target:
        return False
    return target_min is None or result["cosine_min"] >= target_min


def mixed_precision(
    src: Path,
    dest: Path,
    ctx: PassContext,
    feeds: list[dict[str, np.ndarray]],
    *,
    target: float,
    target_min: float | None,
    max_float_fraction: float,
    per_channel: bool = True,
    reduce_range: bool = False,
    op_types: list[str] | None = None,
    always_float: list[str] | None = None,
    graph: Any = None,
    reference: Any = None,
) -> MixedResult:
    """Dynamic int8 of ``src`` into ``dest`` with the fewest float layers that meet the target on
    ``feeds`` (``onnx_quant.evaluation_feeds``). ``graph``: ``src`` already in memory, when the
    caller holds it (it is read, not changed). ``reference``: the float outputs on ``feeds``, when
    the caller has them from a graph of the same function."""
    if reference is None:
        reference = onnx_quant.run_outputs(src, feeds)

    fixed = list(always_float or [])

    def quantize(excluded: list[str]) -> dict[str, Any]:
        onnx_quant.dynamic_int8(
            src, dest, per_channel=per_channel, reduce_range=reduce_range, op_types=op_types,
            nodes_to_exclude=fixed + excluded,
        )
        return onnx_quant.fidelity(reference, onnx_quant.run_outputs(dest, feeds), feeds)

    ctx.progress(0.05, "quantizing the whole model")
    result = quantize([])
    names = onnx_quant.weight_matmuls(graph if graph is not None else onnx_model.load_proto(src, with_data=False))
    layers = [name for name in names if name not in fixed]
    if _meets(result, target, target_min) or not layers or max_float_fraction <= 0:
        return MixedResult(dest, [], result, [], _meets(result, target, target_min), reference)

    ctx.progress(0.1, f"measuring the sensitivity of {len(layers)} layers")
    sens = sensitivity.layer_sensitivities(
        graph if graph is not None else onnx_model.load_proto(src),
        layers,
        feeds,
        reference,
        on_layer=lambda done, total: (ctx.check_cancel(), ctx.progress(0.1 + 0.7 * done / total, f"layer {done}/{total}")),
    )
    order = sorted(sens, key=lambda s: s.drop, reverse=True)
    drops = [s.drop for s in order]
    # Per-layer drops add up roughly; scale them so that they explain the measured total.
    scale = (1.0 - result["cosine_mean"]) / max(sum(drops), 1e-12)
    cap = int(len(layers) * max_float_fraction)
    k = next((k for k in range(cap + 1) if scale * sum(drops[k:]) <= 1.0 - target), cap)
    met = False
    for _ in range(8):
        ctx.check_cancel()
        ctx.progress(0.85, f"checking with {k} layers in float")
        result = quantize([s.name for s in order[:k]])
        met = _meets(result, target, target_min)
        if met or k >= cap:
            break
        k = min(cap, k + max(1, k // 4))
    kept = [s.name for s in order[:k]]
    return MixedResult(dest, kept, result, sens, met, reference)


def sensitivity_section(result: MixedResult, target: float) -> dict[str, Any]:
    """The job report's ``sensitivity`` section: each measured layer's cosine and whether it was
    kept in float."""
    kept = set(result.kept_float)
    return {
        "metric": "cosine",
        "target": target,
        "layers": [{"name": s.name, "score": s.cosine_mean, "kept_float": s.name in kept} for s in result.sensitivities],
    }
