"""Quantization-aware training: torchao fake quantization during fine-tuning on the job's dataset,
then delivery as an onnxruntime int8 model.

1. The model is loaded as PyTorch (``load_torch``: HF checkpoint, or ONNX through onnx2torch).
2. torchao's ``QATConfig`` swaps every ``nn.Linear`` for a fake-quantized one: weights int8
   symmetric per output channel (what onnxruntime's int8 kernels use), activations int8
   asymmetric computed at run time. torchao 0.18 refuses per-tensor activation fake quantization,
   so training sees per-token ranges, slightly finer than onnxruntime's per-tensor dynamic ones.
3. The shared training loop (``engine.training.fit``) fine-tunes it (labels when the dataset has
   them, else toward the original's outputs).
4. ``QATConfig(step="convert")`` removes the fake quantizers; the trained float weights are
   exported to ONNX and quantized with onnxruntime's dynamic int8, per channel and symmetric,
   which recomputes the same per-channel scales (absmax / 127) from the same weights.

Why not deliver torchao's own int8 tensors: on torchao 0.18 they cannot be saved with
safetensors (measured: ``save_pretrained`` fails on the tensor subclass) nor exported to ONNX,
and the service delivers safetensors or ONNX only. The output is therefore always ONNX.
The mechanics are in engine/quantization/qat.py.

Limits: torchao's QAT covers ``nn.Linear`` (and embeddings), not convolutions; a CNN's convolutions
are quantized at delivery without having been trained for it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.context import PassContext
from engine.model import ModelFile
from engine.quantization import qat
from engine.registry import Pass
from engine.training import TrainConfig


class QatConfig(TrainConfig):
    objective: Literal["auto", "labels", "distill"] = Field(
        "auto", description="labels: cross-entropy on the dataset's labels; distill: match the original's outputs"
    )
    fake_quantize_activations: bool = Field(
        True, description="also fake-quantize Linear inputs (int8, dynamic per token; onnxruntime then uses per tensor)"
    )


class QuantizationAwareTraining(Pass[QatConfig]):
    op = "quantize"
    method = "qat"
    summary = "quantization-aware training (torchao fake quant + fine-tuning), delivered as ONNX int8"
    accepts = ("onnx", "hf")
    devices = ("cpu", "cuda")
    needs_dataset = True

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        import os

        os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")  # CUDA .so noise on CPU
        from engine import training
        from engine.formats.torch_model import load_torch, save_torch

        cfg = self.config
        ctx.require_dataset("quantization-aware training fine-tunes on it")
        tm = load_torch(model).trainable()
        fake_quantized = qat.prepare(tm.module, fake_quantize_activations=cfg.fake_quantize_activations)
        result = training.fit(tm, ctx, cfg, objective=cfg.objective, name="qat")
        qat.convert(tm.module)
        ctx.add_report_section("qat", {**result.summary(), "fake_quantized_linears": fake_quantized, "history": result.history})
        delivered = qat.deliver_int8(save_torch(tm, ctx.subdir("trained")), tm.module, ctx)
        ctx.resolved.update(fake_quantized_linears=fake_quantized, delivered_as="onnx dynamic int8 per-channel")
        return delivered
