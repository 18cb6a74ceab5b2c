"""Quantization-aware training's mechanics: torchao fake quantization of every ``nn.Linear``, and
delivery of the trained model as onnxruntime dynamic int8 (the training itself is
``engine.training.fit``)."""

from __future__ import annotations

from typing import Any

from engine.context import PassContext
from engine.model import ModelFile
from engine.quantization import onnx_quant


def prepare(module: Any, *, fake_quantize_activations: bool) -> int:
    """Swap every ``nn.Linear`` of ``module`` for a fake-quantized one (weights int8 symmetric per
    output channel; activations int8 asymmetric per token, when asked); how many were swapped.
    torchao 0.18 refuses per-tensor activation fake quantization, hence per token."""
    import torch
    from torchao.quantization import quantize_
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

    weight_config = IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
    activation_config = (
        IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False) if fake_quantize_activations else None
    )
    quantize_(module, QATConfig(activation_config=activation_config, weight_config=weight_config, step="prepare"))
    return sum(type(m).__name__ == "FakeQuantizedLinear" for m in module.modules())


def convert(module: Any) -> None:
    """Remove the fake quantizers, leaving the trained float weights."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    quantize_(module, QATConfig(step="convert"))


def deliver_int8(trained: ModelFile, module: Any, ctx: PassContext) -> ModelFile:
    """The saved trained model (an HF checkpoint is exported to ONNX from ``module`` first) as
    onnxruntime dynamic int8, per channel and symmetric: the same per-channel scales
    (absmax / 127) that training saw, from the same weights."""
    from engine.formats import torch_bridge

    if trained.format == "hf":
        onnx_path = ctx.subdir("exported") / "model.onnx"
        torch_bridge.export_hf_onnx(module, trained.path, onnx_path)
        trained = trained.with_path(onnx_path, "onnx")
    ctx.check_cancel()
    with onnx_quant.preprocessed(trained.path, ctx.work_dir) as src:
        dest = onnx_quant.dynamic_int8(src, ctx.work_dir / "model.onnx", per_channel=True, symmetric_weights=True)
    return trained.with_path(dest, "onnx")
