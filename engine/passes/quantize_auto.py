"""The default quantization (``{"op": "quantize"}``): the best recipe we measured, not the library's.

For an ONNX model (MiniLM-L6, 400 real sentences, sequence 64, mean-pooled embeddings vs fp32;
docs/methods/quantize.md and docs/benchmarks.md have the tables):

- ``quantize_dynamic`` defaults (per-tensor): cosine 0.962; per-channel: 0.992 (min 0.975);
- keeping the six most sensitive FFN MatMuls in float reaches 0.996 but gives up most of the speed;
- what this pass does: onnxruntime's pre-processing, then the few outlier channels of each
  MatMul's activation (found on calibration inputs) are split off into a thin float MatMul
  (``engine.quantization.outlier_split``), then dynamic int8 per-channel of everything else:
  cosine 0.997 (min 0.992) with every weight MatMul in int8. Before quantizing, BERT attention is
  fused (``attention_fusion``) and residual sums are kept out of onnxruntime's slow
  SkipLayerNormalization kernel (``residual_sum``): 1.61x fp32's speed at batch 1, 1.52x at
  batch 8 on an AMD EPYC (2 cores, AVX2, no VNNI; measured 2026-11-23). The feed-forward bias
  then goes inside its int8 MatMul rather than onnxruntime's ``BiasGelu`` (``gelu_bias``: 3%
  on an Intel Xeon with VNNI and AMX, 2026-12-01).

On an x86 CPU without a VNNI/AMX int8 dot product (AVX2 only), the weights are quantized to 7
bits (``reduce_range``): onnxruntime's u8s8 kernels there add pairs of products in int16 and
saturate, which took the recipe above to cosine 0.979 on an AMD EPYC; 7-bit weights cannot
overflow and gave 0.996 (min 0.991). ``reduce_range`` says "auto" (the worker's CPU decides), or
true/false for a deployment CPU that differs from the worker's.

The result's fidelity is then checked on the job's dataset (or generated inputs); if it misses
``target_cosine``, the most sensitive layers are kept in float as ``quantize.mixed`` does, and the
per-layer sensitivity goes into the report. The mechanics are in engine/quantization/auto.py.

A graph with convolutions goes another way (engine/quantization/convolutional.py): dynamic int8
would make each Conv a ``ConvInteger``, which ran several times slower than float on the digits
CNN. There the pass quantizes statically (QDQ, per-channel, calibrated on the same rows), times
the int8 model against the float model with onnxruntime's graph optimizations, and delivers int8
only where it measured faster, else the float model: never a model slower than the original.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from engine.context import PassContext
from engine.model import ModelFile
from engine.quantization import auto
from engine.quantization.options import Cosine, GeneratedInputsOption, ReduceRangeOption
from engine.registry import Pass


class AutoQuantizeConfig(GeneratedInputsOption, ReduceRangeOption):
    target_cosine: Cosine = Field(
        0.99,
        description=(
            "mean cosine of the raw output to the float model's, on the job's dataset or generated inputs; "
            "below it, the most sensitive layers stay in float (a convolutional model: int8 is not delivered)"
        ),
    )
    outlier_ratio: float = Field(
        6.0, ge=1.0, le=1000.0, description="an activation channel whose range exceeds this many times the median is an outlier"
    )
    max_outlier_channels: int = Field(
        16, ge=0, le=1024, description="at most this many outlier channels per activation go to float (0: no split)"
    )
    calibration_rows: int = Field(
        32,
        ge=1,
        le=4096,
        description=(
            "rows (dataset rows, or generated inputs) for outlier search (static calibration on a "
            "convolutional model) and the fidelity check"
        ),
    )
    timing_batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] | None = Field(
        None,
        min_length=1,
        max_length=4,
        description=(
            "a convolutional model: the batch sizes int8 and float are timed at to choose between them "
            "(default: 1 and the calibration batch; a goal job's search times at the goal's batch size)"
        ),
    )
    fuse_attention: bool = Field(
        True,
        description=(
            "fuse each BERT-style attention into onnxruntime's Attention kernel (QAttention once quantized) "
            "when the fused graph computes the same outputs"
        ),
    )


class AutoQuantize(Pass[AutoQuantizeConfig]):
    op = "quantize"
    method = "auto"
    summary = (
        "Default: int8 with outlier channels in float, checked against a fidelity target; "
        "on convolutional models static int8, delivered only where it measured faster than float"
    )
    # An HF checkpoint is exported to ONNX first: the result is an ONNX model.
    accepts = ("onnx", "hf")
    devices = ("cpu",)
    default_for_op = True

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        return auto.quantize(model, ctx, auto.Recipe(**self.config.model_dump()))
