"""The default quantization (``{"op": "quantize"}``): the best recipe we measured, not the library's.

For an ONNX model (MiniLM-L6, 400 real sentences, sequence 64, mean-pooled embeddings vs fp32;
the README's Quantization section has the table):

- ``quantize_dynamic`` defaults (per-tensor): cosine 0.962; per-channel: 0.992 (min 0.975);
- keeping the six most sensitive FFN MatMuls in float reaches 0.996 but gives up most of the speed;
- what this pass does: onnxruntime's pre-processing, then the few outlier channels of each
  MatMul's activation (found on calibration inputs) are split off into a thin float MatMul
  (``outlier_split``), then dynamic int8 per-channel of everything else: cosine 0.997 (min
  0.992) with every weight MatMul in int8. Before quantizing, BERT attention is fused
  (``attention_fusion``) and residual sums are kept out of onnxruntime's slow
  SkipLayerNormalization kernel (``residual_sum``): 1.61x fp32's speed at batch 1, 1.52x at
  batch 8 on a 2-core AVX2 CPU.

On an x86 CPU without a VNNI/AMX int8 dot product (AVX2 only), the weights are quantized to 7
bits (``reduce_range``): onnxruntime's u8s8 kernels there add pairs of products in int16 and
saturate, which took the recipe above to cosine 0.979 on an AMD EPYC; 7-bit weights cannot
overflow and gave 0.996 (min 0.991). ``reduce_range`` says "auto" (the worker's CPU decides), or
true/false for a deployment CPU that differs from the worker's.

The result's fidelity is then checked on the job's dataset (or generated inputs); if it misses
``target_cosine``, the most sensitive layers are kept in float as ``quantize.mixed`` does, and the
per-layer sensitivity goes into the report. Speed is not measured here: the job's benchmark times
the candidate against the original and flags it if slower, and a flagged candidate is never
chosen as the best.
"""

from __future__ import annotations

from pydantic import Field

from engine import hardware
from engine.context import PassContext
from engine.model import ModelFile
from engine.passes.quantize_mixed import mixed_precision, sensitivity_section
from engine.quantization import attention_fusion, onnx_quant, outlier_split
from engine.registry import Pass, PassConfig


class AutoQuantizeConfig(PassConfig):
    target_cosine: float = Field(
        0.99,
        gt=0.0,
        le=1.0,
        description=(
            "mean cosine of the raw output to the float model's, on the job's dataset or generated inputs; "
            "below it, the most sensitive layers stay in float"
        ),
    )
    outlier_ratio: float = Field(
        6.0, ge=1.0, le=1000.0, description="an activation channel whose range exceeds this many times the median is an outlier"
    )
    max_outlier_channels: int = Field(
        16, ge=0, le=1024, description="at most this many outlier channels per activation go to float (0: no split)"
    )
    calibration_rows: int = Field(
        32, ge=1, le=4096, description="rows (dataset rows, or generated inputs) for outlier search and the fidelity check"
    )
    sequence_length: int = Field(64, ge=1, le=4096, description="for symbolic sequence axes of generated inputs")
    fuse_attention: bool = Field(
        True,
        description=(
            "fuse each BERT-style attention into onnxruntime's Attention kernel (QAttention once quantized) "
            "when the fused graph computes the same outputs"
        ),
    )
    reduce_range: onnx_quant.ReduceRange = onnx_quant.reduce_range_field()


class AutoQuantize(Pass[AutoQuantizeConfig]):
    op = "quantize"
    method = "auto"
    summary = "Default: int8 with outlier channels in float, checked against a fidelity target"
    # An HF checkpoint is exported to ONNX first: the result is an ONNX model.
    accepts = ("onnx", "hf")
    devices = ("cpu",)
    default_for_op = True

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        cfg = self.config
        reduce_range = onnx_quant.resolve_reduce_range(cfg.reduce_range, ctx)
        ctx.progress(0.0, "pre-processing")
        model = onnx_quant.as_onnx(model, ctx)
        feeds = onnx_quant.evaluation_feeds(model.path, ctx, rows=cfg.calibration_rows, sequence_length=cfg.sequence_length)
        fusion = attention_fusion.fuse_attention(model.path, ctx.work_dir / "fused.onnx", feeds) if cfg.fuse_attention else None
        # Residual sums once, after the split: each outlier correction then joins its Sum.
        src = onnx_quant.preprocess(fusion.path if fusion else model.path, ctx.work_dir / "preprocessed.onnx", residual_sums=False)
        float_nodes: list[str] = []
        counts: dict[str, int] = {}
        if cfg.max_outlier_channels > 0:
            ctx.progress(0.05, "finding outlier activation channels")
            split, float_nodes, counts = outlier_split.split_outliers(
                src, ctx.work_dir / "split.onnx", feeds, ratio=cfg.outlier_ratio, max_channels=cfg.max_outlier_channels
            )
        else:
            split = src
        sums = onnx_quant.sum_residuals(split) if split != model.path else 0
        result = mixed_precision(
            split,
            ctx.work_dir / "model.onnx",
            ctx,
            target=cfg.target_cosine,
            target_min=None,
            rows=cfg.calibration_rows,
            sequence_length=cfg.sequence_length,
            max_float_fraction=0.5,
            reduce_range=reduce_range,
            always_float=float_nodes,
        )
        if result.sensitivities:
            ctx.add_report_section("sensitivity", sensitivity_section(result, cfg.target_cosine))
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
