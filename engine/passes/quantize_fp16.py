"""fp16 conversion of an ONNX model, keeping float32 inputs and outputs.

Halves the weights; on CPUs without native fp16 arithmetic onnxruntime inserts casts and runs
most operators in float32, so expect a smaller file rather than a faster one there (the
benchmark says which). On CUDA it is the usual fast path. The mechanics are in
engine/quantization/fp16.py.
"""

from __future__ import annotations

from pydantic import Field

from engine.context import PassContext
from engine.model import ModelFile
from engine.quantization import fp16
from engine.registry import Pass, PassConfig


class Fp16Config(PassConfig):
    keep_io_types: bool = Field(True, description="inputs and outputs stay float32, so callers need no change")
    op_block_list: list[str] = Field(
        default_factory=list, description="operator types kept in float32 (besides onnxruntime's default list)"
    )
    nodes_to_exclude: list[str] = Field(default_factory=list, description="node names kept in float32")


class Fp16Convert(Pass[Fp16Config]):
    op = "quantize"
    method = "fp16"
    summary = "ONNX float16 weights and compute, float32 inputs/outputs kept"
    accepts = ("onnx",)
    devices = ("cpu", "cuda")

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        cfg = self.config
        dest = fp16.convert(
            model.path,
            ctx.work_dir / "model.onnx",
            keep_io_types=cfg.keep_io_types,
            op_block_list=cfg.op_block_list,
            nodes_to_exclude=cfg.nodes_to_exclude,
        )
        return model.with_path(dest)
