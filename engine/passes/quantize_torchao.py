"""torchao post-training quantization of a model's Linear weights, delivered as ONNX.

torchao computes the quantization: every weight MatMul of the ONNX graph (an HF checkpoint is
exported to ONNX first) is a ``Linear`` whose weight ``quantize_`` quantizes with the chosen
config; its integer codes, scales and zero points (``qdata``, ``scale``, ``zero_point`` of
torchao's quantized tensor) are then written into the graph as operators onnxruntime runs:

- ``int8_weight_only`` (``Int8WeightOnlyConfig``, per channel): int8 initializer +
  ``DequantizeLinear`` before the MatMul. 4x smaller weights; compute stays float.
- ``int4_weight_only`` (``IntxWeightOnlyConfig(torch.int4, PerGroup(group_size))``, what runs on
  CPU; ``Int4WeightOnlyConfig`` needs CUDA): onnxruntime's ``MatMulNBits`` with torchao's codes.
- ``int8_dynamic`` (``Int8DynamicActivationInt8WeightConfig``): int8 weights and
  ``DynamicQuantizeLinear`` -> ``MatMulInteger`` (fused by onnxruntime into
  ``DynamicQuantizeMatMul``). torchao quantizes activations per token; onnxruntime per tensor.

Why ONNX and not torchao's tensors themselves: on torchao 0.18 they can be neither saved with
safetensors (``save_pretrained`` fails on the tensor subclass) nor exported to ONNX, and the
service delivers safetensors or ONNX. Embeddings (Gather) stay float. The mechanics are in
engine/quantization/torchao.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.context import PassContext
from engine.errors import PassNotApplicable
from engine.formats import onnx_model
from engine.model import ModelFile
from engine.quantization import onnx_quant, torchao
from engine.registry import Pass, PassConfig


class TorchaoConfig(PassConfig):
    scheme: Literal["int8_dynamic", "int8_weight_only", "int4_weight_only"] = Field(
        "int8_dynamic", description="torchao config applied to every Linear (weight MatMul)"
    )
    group_size: Literal[32, 64, 128] = Field(32, description="int4_weight_only: weights per scale")


class TorchaoQuantize(Pass[TorchaoConfig]):
    op = "quantize"
    method = "torchao"
    summary = "torchao int8 dynamic / int8 / int4 weight-only of Linear weights, written as ONNX operators"
    accepts = ("onnx", "hf")
    devices = ("cpu",)

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        import os

        os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")  # CUDA .so noise on CPU
        cfg = self.config
        source = onnx_quant.as_onnx(model, ctx)
        proto = onnx_model.load_proto(source.path)
        targets = torchao.weight_matmuls(proto, cfg.scheme, cfg.group_size)
        if not targets:
            raise PassNotApplicable("quantize.torchao found no MatMul with a 2-D constant weight", detail={"pass": self.name})

        def on_node(i: int, name: str) -> None:
            ctx.check_cancel()
            ctx.progress(i / len(targets), f"torchao {cfg.scheme}: {name}")

        torchao.rewrite(proto, targets, cfg.scheme, cfg.group_size, on_node=on_node)
        dest = onnx_model.save_proto(proto, ctx.work_dir / "model.onnx")
        ctx.resolved.update(torchao_linears=len(targets), delivered_as="onnx")
        return source.with_path(dest, "onnx")
