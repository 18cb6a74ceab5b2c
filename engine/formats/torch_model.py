"""One way for PyTorch passes to get a model as a ``torch.nn.Module`` and to give it back.

``load_torch`` works for both formats: an HF checkpoint loads with transformers; an ONNX graph is
converted with onnx2torch. ``save_torch`` writes the result in the model's own format: HF as
config + safetensors (+ tokenizer), ONNX by exporting with the original signature, so a pruned
ONNX model comes back as ONNX.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engine.formats import hf, onnx_model, torch_bridge
from engine.model import ModelFile


@dataclass
class TorchModel:
    module: Any  # torch.nn.Module
    kind: Literal["hf", "fx"]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    source: ModelFile

    @property
    def input_names(self) -> list[str]:
        return [spec["name"] for spec in self.inputs]

    def forward(self, feeds: dict[str, Any]) -> Any:
        """The primary output tensor (logits, or the last hidden state) for named input tensors."""
        if self.kind == "hf":
            out = self.module(**{k: v for k, v in feeds.items() if k in self.input_names}, return_dict=True)
            return out["logits"] if "logits" in out else out["last_hidden_state"]
        out = self.module(*[feeds[name] for name in self.input_names])
        return out[0] if isinstance(out, (tuple, list)) else out

    def example_feeds(self, *, batch: int = 2, seq_len: int = 16) -> dict[str, Any]:
        import torch

        arrays = onnx_model.sample_feeds(self.inputs, batch=batch, seq_len=seq_len)
        if self.kind == "hf":
            # Token ids must stay inside the vocabulary of the checkpoint.
            vocab = int(getattr(self.module.config, "vocab_size", 1000))
            for name, arr in arrays.items():
                if "input_ids" in name:
                    arrays[name] = np.random.default_rng(0).integers(1, min(vocab, 5000), size=arr.shape)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}

    def trainable(self) -> TorchModel:
        """ONNX-converted graphs keep MatMul weights as buffers: make them parameters."""
        if self.kind == "fx":
            torch_bridge.buffers_to_parameters(self.module)
        return self


def load_torch(model: ModelFile) -> TorchModel:
    if model.format == "hf":
        module = hf.load_model(model.path, task_head=True)
        names = hf.input_names(model.path)
        inputs = [{"name": n, "shape": ["batch", "sequence"], "dtype": "int64"} for n in names]
        return TorchModel(module=module, kind="hf", inputs=inputs, outputs=[], source=model)
    proto = onnx_model.load_proto(model.path, with_data=False)
    inputs, outputs = onnx_model.signature(proto)
    module = torch_bridge.onnx_to_torch(model.path)
    return TorchModel(module=module, kind="fx", inputs=inputs, outputs=outputs, source=model)


def save_torch(tm: TorchModel, dest_dir: Path) -> ModelFile:
    """Write the module in its source format under ``dest_dir`` and return the new ModelFile."""
    tm.module.eval()
    if tm.kind == "hf":
        folder = hf.save_model(tm.module, dest_dir / "checkpoint", tokenizer_from=tm.source.path)
        return tm.source.with_path(folder, "hf")
    dest = dest_dir / "model.onnx"
    example = tm.example_feeds(batch=2, seq_len=16)
    opset = next(
        (o.version for o in onnx_model.load_proto(tm.source.path, with_data=False).opset_import if o.domain in ("", "ai.onnx")),
        17,
    )
    torch_bridge.export_onnx(
        tm.module,
        tuple(example[n] for n in tm.input_names),
        dest,
        inputs=tm.inputs,
        outputs=tm.outputs,
        opset=max(13, min(opset, 18)),
    )
    return tm.source.with_path(dest, "onnx")
