"""Mixed precision by sensitivity (``quantize.mixed``): ONNX dynamic int8 with the most sensitive
layers kept in float until a fidelity target is met (engine/quantization/mixed_precision.py).
The per-layer sensitivity goes into the job report (section ``sensitivity``).
"""

from __future__ import annotations

from pydantic import Field

from engine.context import PassContext
from engine.model import ModelFile
from engine.quantization import onnx_quant
from engine.quantization.mixed_precision import mixed_precision, sensitivity_section
from engine.quantization.options import (
    Cosine,
    GeneratedInputsOption,
    PerChannelOption,
    PreprocessOption,
    ReduceRangeOption,
)
from engine.registry import Pass


class MixedPrecisionConfig(GeneratedInputsOption, PerChannelOption, ReduceRangeOption, PreprocessOption):
    target_cosine: Cosine = Field(0.995, description="mean cosine of the output to the float model's that must be reached")
    target_min_cosine: Cosine | None = Field(None, description="optional bound on the worst row's cosine as well")
    sensitivity_rows: int = Field(
        32, ge=1, le=4096, description="rows (dataset rows, or generated inputs) the fidelity is measured on"
    )
    max_float_fraction: float = Field(
        0.5, ge=0.0, le=1.0, description="never keep more than this fraction of the layers in float"
    )


class MixedPrecisionQuantize(Pass[MixedPrecisionConfig]):
    op = "quantize"
    method = "mixed"
    summary = "ONNX dynamic int8 with the most sensitive layers kept in float until a fidelity target is met"
    accepts = ("onnx",)
    devices = ("cpu",)

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        cfg = self.config
        with onnx_quant.preprocessed(model.path, ctx.work_dir, enabled=cfg.preprocess) as src:
            result = mixed_precision(
                src,
                ctx.work_dir / "model.onnx",
                ctx,
                onnx_quant.evaluation_feeds(src, ctx, rows=cfg.sensitivity_rows, sequence_length=cfg.sequence_length),
                target=cfg.target_cosine,
                target_min=cfg.target_min_cosine,
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
        return model.with_path(result.path)
