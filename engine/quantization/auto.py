"""The default quantization (``{"op": "quantize"}``), on one graph held in memory.

The model is loaded once and goes through attention fusion (``attention_fusion``), onnxruntime's
pre-processing, the outlier split (``outlier_split``) and the residual-sum rewrite
(``residual_sum``) as an ``onnx.ModelProto``; the quantizer's output gets the GELU bias inside its
int8 MatMul (``gelu_bias``, in ``onnx_quant.dynamic_int8``); it is written to a file only where onnxruntime reads
one (its pre-processing, its quantizer and the sessions that measure fidelity). The evaluation
inputs are computed once, for the fusion check, the outlier search and the fidelity check.
A graph with convolutions takes another path (``convolutional``: static int8, timed against float).
docs/methods/quantize.md has what each step is worth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine import hardware
from engine.context import PassContext
from engine.formats import onnx_model
from engine.model import ModelFile
from engine.quantization import (
    attention_fusion,
    convolutional,
    gelu_bias,
    onnx_quant,
    outlier_split,
    residual_sum,
)
from engine.quantization.mixed_precision import MixedResult, mixed_precision, sensitivity_section
from engine.quantization.options import ReduceRange


@dataclass(frozen=True)
class Recipe:
    """The default's options (``AutoQuantizeConfig`` documents each)."""

    target_cosine: float
    outlier_ratio: float
    max_outlier_channels: int
    calibration_rows: int
    sequence_length: int
    fuse_attention: bool
    reduce_range: ReduceRange
    timing_batch_sizes: list[int] | None = None


def quantize(model: ModelFile, ctx: PassContext, recipe: Recipe) -> ModelFile:
    """Dynamic int8 of ``model`` (an HF checkpoint is exported to ONNX first) into
    ``ctx.work_dir / "model.onnx"``; what was done and measured goes into ``ctx.resolved``."""
    reduce_range = onnx_quant.resolve_reduce_range(recipe.reduce_range, ctx)
    ctx.progress(0.0, "pre-processing")
    model = onnx_quant.as_onnx(model, ctx)
    graph = onnx_model.load_proto(model.path)
    feeds = onnx_quant.evaluation_feeds(graph, ctx, rows=recipe.calibration_rows, sequence_length=recipe.sequence_length)
    if convolutional.is_convolutional(graph):
        # Dynamic int8 would make every Conv a ConvInteger, slower than float.
        return convolutional.quantize(model, ctx, feeds, target_cosine=recipe.target_cosine, reduce_range=reduce_range,
                                      timing_batch_sizes=recipe.timing_batch_sizes)
    if recipe.fuse_attention:
        attempt = attention_fusion.attempt_fusion(model.path, ctx.work_dir / "fused.onnx", feeds, proto=graph)
        fusion, rewrites = attempt.fusion, attempt.rewrites
        del attempt
    else:
        fusion, rewrites = None, {"attention_fusion": {"applied": False, "reason": "fuse_attention is false"}}
    pre_process_input = model.path
    fused: dict[str, int] | None = None
    if fusion:
        graph, pre_process_input, fused = fusion.model, fusion.path, fusion.fused
    del fusion  # the graph is held once, in ``graph``
    preprocessed = ctx.work_dir / "preprocessed.onnx"
    pre_processed = onnx_quant.run_pre_process(pre_process_input, preprocessed)
    if pre_processed:
        graph = onnx_model.load_proto(preprocessed)
        preprocessed.unlink()
    if fused:
        pre_process_input.unlink()

    rewrite_sums = bool(fused or pre_processed)
    plain, plain_sums = _without_split(graph, ctx, feeds, recipe, reduce_range, rewrite_sums) if recipe.max_outlier_channels > 0 else (None, 0)
    if plain is not None and plain.met_target:
        # int8 without the split already meets the target: the split would only cost speed.
        result, split, sums = plain, None, plain_sums
        split_note = "no outlier split (int8 met the target without it)"
    else:
        split = None
        if recipe.max_outlier_channels > 0:
            ctx.progress(0.05, "finding outlier activation channels")
            split = outlier_split.split_outliers(graph, feeds, ratio=recipe.outlier_ratio, max_channels=recipe.max_outlier_channels)
        # Residual sums once, after the split: each outlier correction then joins its Sum. A graph
        # quantized just as it came (not fused, pre-processed nor split) keeps its own.
        sums = residual_sum.rewrite(graph) if rewrite_sums or split is not None else 0
        prepared = onnx_model.save_proto(graph, ctx.work_dir / "prepared.onnx")
        result = mixed_precision(
            prepared,
            ctx.work_dir / "model.onnx",
            ctx,
            feeds,
            target=recipe.target_cosine,
            target_min=None,
            max_float_fraction=0.5,
            reduce_range=reduce_range,
            always_float=split.float_nodes if split else [],
            graph=graph,
            # The split and the residual sums rewrite the graph, not its function.
            reference=plain.reference if plain is not None else None,
        )
        prepared.unlink()
        split_note = "outlier split"
    if result.sensitivities:
        ctx.add_report_section("sensitivity", sensitivity_section(result, recipe.target_cosine))
    counts = split.counts if split else {}
    rewrites["gelu_bias"] = gelu_bias.verdict(onnx_model.load_proto(result.path, with_data=False))
    ctx.resolved.update(
        recipe=("attention fusion + " if fused else "")
        + f"preprocess + {split_note} + "
        + ("residual sums + " if sums else "")
        + ("GELU bias in the int8 MatMul + " if rewrites["gelu_bias"]["applied"] else "")
        + "dynamic int8 per-channel"
        + (", 7-bit weights" if reduce_range else ""),
        cpu=hardware.cpu_info(),
        outlier_channels=sum(counts.values()),
        split_activations=len(counts),
        outlier_split=_split_verdict(plain, split),
        residual_sums=sums,
        kept_float=result.kept_float,
        measured_cosine_mean=result.fidelity["cosine_mean"],
        measured_cosine_min=result.fidelity["cosine_min"],
        met_target=result.met_target,
        rewrites=rewrites,
    )
    if fused:
        ctx.resolved["fused"] = fused
    return model.with_path(result.path)


def _split_verdict(plain: MixedResult | None, split: Any) -> dict[str, Any]:
    if plain is None:
        return {"applied": False, "reason": "max_outlier_channels is 0"}
    if plain.met_target:
        return {"applied": False, "reason": f"int8 without it met the target (cosine {plain.fidelity['cosine_mean']:.4f})"}
    if split is None:
        return {"applied": False, "reason": "no weight MatMul to split"}
    return {"applied": True, "reason": f"int8 without it missed the target (cosine {plain.fidelity['cosine_mean']:.4f})"}


def _without_split(graph: Any, ctx: PassContext, feeds: list, recipe: Recipe, reduce_range: bool, rewrite_sums: bool) -> tuple[MixedResult, int]:
    """Every layer int8 and no outlier split, measured once against the target (no sensitivity
    search: keeping layers float is what the split avoids). The split costs speed (a float
    correction per split activation: about a tenth of MiniLM-L6's int8 time at batch 8), so it is
    made only where this misses the target."""
    import onnx

    ctx.progress(0.05, "quantizing without the outlier split")
    plain = onnx.ModelProto()
    plain.CopyFrom(graph)
    sums = residual_sum.rewrite(plain) if rewrite_sums else 0
    prepared = onnx_model.save_proto(plain, ctx.work_dir / "prepared-plain.onnx")
    try:
        result = mixed_precision(prepared, ctx.work_dir / "model.onnx", ctx, feeds, target=recipe.target_cosine, target_min=None,
                                 max_float_fraction=0.0, reduce_range=reduce_range, graph=plain)
        return result, sums
    finally:
        prepared.unlink()
