"""fp16 conversion of an ONNX model, keeping float32 inputs and outputs.

Halves the weights; on CPUs without native fp16 arithmetic onnxruntime inserts casts and runs
most operators in float32, so expect a smaller file rather than a faster one there (the
benchmark says which). On CUDA it is the usual fast path.
"""

from __future__ import annotations

from pydantic import Field

from engine.context import PassContext
from engine.formats import onnx_model
from engine.model import ModelFile
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
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

        cfg = self.config
        proto = onnx_model.load_proto(model.path)
        converted = convert_float_to_float16(
            proto,
            keep_io_types=cfg.keep_io_types,
            op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(cfg.op_block_list)),
            node_block_list=cfg.nodes_to_exclude or None,
        )
        dest = ctx.work_dir / "model.onnx"
        onnx_model.save_proto(converted, dest)
        return model.with_path(dest)
