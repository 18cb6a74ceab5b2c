"""The default quantization (``{"op": "quantize"}``): attention fusion (``attention_fusion``),
onnxruntime's pre-processing, the outlier split (``outlier_split``), the residual-sum rewrite
(``residual_sum``), then dynamic int8 checked against a fidelity target (``mixed_precision``).
docs/methods/quantize.md has what each step is worth.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine import hardware
from engine.context import PassContext
from engine.model import ModelFile
from engine.quantization import attention_fusion, onnx_quant, outlier_split
from engine.quantization.mixed_precision import mixed_precision, sensitivity_section
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


def quantize(model: ModelFile, ctx: PassContext, recipe: Recipe) -> ModelFile:
    """Dynamic int8 of ``model`` (an HF checkpoint is exported to ONNX first) into
    ``ctx.work_dir / "model.onnx"``; what was done and measured goes into ``ctx.resolved``."""
    reduce_range = onnx_quant.resolve_reduce_range(recipe.reduce_range, ctx)
    ctx.progress(0.0, "pre-processing")
    model = onnx_quant.as_onnx(model, ctx)
    feeds = onnx_quant.evaluation_feeds(model.path, ctx, rows=recipe.calibration_rows, sequence_length=recipe.sequence_length)
    fusion = attention_fusion.fuse_attention(model.path, ctx.work_dir / "fused.onnx", feeds) if recipe.fuse_attention else None
    # Residual sums once, after the split: each outlier correction then joins its Sum.
    src = fusion.path if fusion else model.path
    if onnx_quant.run_pre_process(src, ctx.work_dir / "preprocessed.onnx"):
        src = ctx.work_dir / "preprocessed.onnx"
    float_nodes: list[str] = []
    counts: dict[str, int] = {}
    if recipe.max_outlier_channels > 0:
        ctx.progress(0.05, "finding outlier activation channels")
        split, float_nodes, counts = outlier_split.split_outliers(
            src, ctx.work_dir / "split.onnx", feeds, ratio=recipe.outlier_ratio, max_channels=recipe.max_outlier_channels
        )
    else:
        split = src
    sums = onnx_quant.sum_residuals(split) if split != model.path else 0
    result = mixed_precision(
        split,
        ctx.work_dir / "model.onnx",
        ctx,
        target=recipe.target_cosine,
        target_min=None,
        rows=recipe.calibration_rows,
        sequence_length=recipe.sequence_length,
        max_float_fraction=0.5,
        reduce_range=reduce_range,
        always_float=float_nodes,
    )
    if result.sensitivities:
        ctx.add_report_section("sensitivity", sensitivity_section(result, recipe.target_cosine))
    ctx.resolved.update(
        recipe=("attention fusion + " if fusion else "")
        + "preprocess + outlier split + "
        + ("residual sums + " if sums else "")
        + "dynamic int8 per-channel"
        + (", 7-bit weights" if reduce_range else ""),
        cpu=hardware.cpu_info(),
        outlier_channels=sum(counts.values()),
        split_activations=len(counts),
        residual_sums=sums,
        kept_float=result.kept_float,
        measured_cosine_mean=result.fidelity["cosine_mean"],
        measured_cosine_min=result.fidelity["cosine_min"],
        met_target=result.met_target,
    )
    if fusion:
        ctx.resolved["fused"] = fusion.fused
    for path in {src, split, fusion.path if fusion else model.path} - {model.path}:
        path.unlink(missing_ok=True)
    return model.with_path(result.path)
