"""Options several quantize passes offer, declared once: a pass config mixes in the classes of the
options it has (``class StaticQuantizeConfig(ReduceRangeOption, PerChannelOption, ...)``) and
gets the same field, default, bounds and description as every other pass that offers it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from engine.registry import PassConfig

ReduceRange = bool | Literal["auto"]

# A cosine of a quantized model's output to the float model's.
Cosine = Annotated[float, Field(gt=0.0, le=1.0)]


class ReduceRangeOption(PassConfig):
    """``reduce_range``: every int8 ONNX pass; decided by the worker's CPU unless set
    (``onnx_quant.resolve_reduce_range``)."""

    reduce_range: ReduceRange = Field(
        "auto",
        description=(
            "7-bit weights, for x86 CPUs without VNNI whose u8s8 int8 kernels saturate (AVX2 only); "
            "auto: when the worker's CPU is one of them"
        ),
    )


class PerChannelOption(PassConfig):
    per_channel: bool = Field(True, description="one weight scale per output channel")


class PreprocessOption(PassConfig):
    preprocess: bool = Field(True, description="run onnxruntime's quant_pre_process before quantizing")


class ExcludedNodesOption(PassConfig):
    nodes_to_exclude: list[str] = Field(default_factory=list, description="node names kept in float")


class GeneratedInputsOption(PassConfig):
    """For passes that measure fidelity on generated inputs when the job has no dataset."""

    sequence_length: int = Field(64, ge=1, le=4096, description="for symbolic sequence axes of generated inputs")
