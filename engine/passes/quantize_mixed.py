"""Mixed precision by sensitivity: dynamic int8 everywhere except the layers that hurt most.

1. Each weight MatMul/Gemm is quantized alone and its effect on the model's output measured
   (cosine to the float output) on the job's dataset, or on inputs generated from the signature.
2. The whole model is quantized; while its output cosine misses the target, the most sensitive
   layers are kept in float (the count predicted from the per-layer drops, then checked on the
   real quantized model).
The per-layer sensitivity goes into the job report (section ``sensitivity``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from engine.context import PassContext
from engine.model import ModelFile
from engine.quantization import onnx_quant, sensitivity
from engine.registry import Pass, PassConfig


class MixedPrecisionConfig(PassConfig):
    target_cosine: float = Field(
        0.995, gt=0.0, le=1.0, description="mean cosine of the output to the float model's that must be reached"
    )
    target_min_cosine: float | None = Field(
        None, gt=0.0, le=1.0, description="optional bound on the worst row's cosine as well"
    )
    sensitivity_rows: int = Field(
        32, ge=1, le=4096, description="rows (dataset rows, or generated inputs) the fidelity is measured on"
    )
    sequence_length: int = Field(64, ge=1, le=4096, description="for symbolic sequence axes of generated inputs")
    max_float_fraction: float = Field(
        0.5, ge=0.0, le=1.0, description="never keep more than this fraction of the layers in float"
    )
    per_channel: bool = Field(True, description="one weight scale per output channel")
    reduce_range: onnx_quant.ReduceRange = onnx_quant.reduce_range_field()
    preprocess: bool = Field(True, description="run onnxruntime's quant_pre_process before quantizing")


@dataclass
class MixedResult:
    path: Path
    kept_float: list[str]
    fidelity: dict[str, Any]
    sensitivities: list[sensitivity.LayerSensitivity]
    met_target: bool


def _meets(result: dict[str, Any], target: float, target_min: float | None) -> bool:
    if result["cosine_mean"] < target:
        return False
    return target_min is None or result["cosine_min"] >= target_min


def mixed_precision(
    src: Path,
    dest: Path,
    ctx: PassContext,
    *,
    target: float,
    target_min: float | None,
    rows: int,
    sequence_length: int,
    max_float_fraction: float,
    per_channel: bool = True,
    reduce_range: bool = False,
    op_types: list[str] | None = None,
    always_float: list[str] | None = None,
) -> MixedResult:
    """Dynamic int8 of ``src`` into ``dest`` with the fewest float layers that meet the target."""
    feeds = onnx_quant.evaluation_feeds(src, ctx, rows=rows, sequence_length=sequence_length)
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
    layers = [name for name in onnx_quant.weight_matmuls(src) if name not in fixed]
    if _meets(result, target, target_min) or not layers:
        return MixedResult(dest, [], result, [], _meets(result, target, target_min))

    ctx.progress(0.1, f"measuring the sensitivity of {len(layers)} layers")
    sens = sensitivity.layer_sensitivities(
        src,
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
    return MixedResult(dest, kept, result, sens, met)


def sensitivity_section(result: MixedResult, target: float) -> dict[str, Any]:
    kept = set(result.kept_float)
    return {
        "metric": "cosine",
        "target": target,
        "layers": [{"name": s.name, "score": s.cosine_mean, "kept_float": s.name in kept} for s in result.sensitivities],
    }


class MixedPrecisionQuantize(Pass[MixedPrecisionConfig]):
    op = "quantize"
    method = "mixed"
    summary = "ONNX dynamic int8 with the most sensitive layers kept in float until a fidelity target is met"
    accepts = ("onnx",)
    devices = ("cpu",)

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        cfg = self.config
        src = onnx_quant.preprocess(model.path, ctx.work_dir / "preprocessed.onnx") if cfg.preprocess else model.path
        result = mixed_precision(
            src,
            ctx.work_dir / "model.onnx",
            ctx,
            target=cfg.target_cosine,
            target_min=cfg.target_min_cosine,
            rows=cfg.sensitivity_rows,
            sequence_length=cfg.sequence_length,
            max_float_fraction=cfg.max_float_fraction,
            per_channel=cfg.per_channel,
            reduce_range=onnx_quant.resolve_reduce_range(cfg.reduce_range, ctx),
        )
        ctx.add_report_section("sensitivity", sensitivity_section(result, cfg.target_cosine))
        ctx.resolved.update(
            kept_float=result.kept_float,
            measured_cosine_mean=result.fidelity["cosine_mean"],
            measured_cosine_min=result.fidelity["cosine_min"],
            met_target=result.met_target,
        )
        ctx.event("quantize.mixed", kept_float=len(result.kept_float), cosine_mean=result.fidelity["cosine_mean"])
        if src != model.path:
            src.unlink(missing_ok=True)
        return model.with_path(result.path)
