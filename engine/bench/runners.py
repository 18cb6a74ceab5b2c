"""One interface to run a model on a batch, whatever its runtime: what the benchmark times."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from engine.data import Dataset, onnx_feeds
from engine.formats import onnx_model
from engine.model import ModelFile


class Runner(Protocol):
    inputs: list[dict[str, Any]]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


@dataclass
class OnnxRunner:
    model: ModelFile
    threads: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device == "cuda" else None
        self.session = onnx_model.session(self.model.path, threads=self.threads, providers=providers)
        self.inputs = [
            {"name": i.name, "shape": list(i.shape), "dtype": _ort_dtype(i.type)} for i in self.session.get_inputs()
        ]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, feeds)


def _ort_dtype(type_str: str) -> str:
    mapping = {
        "tensor(float)": "float32",
        "tensor(float16)": "float16",
        "tensor(double)": "float64",
        "tensor(int64)": "int64",
        "tensor(int32)": "int32",
        "tensor(int8)": "int8",
        "tensor(uint8)": "uint8",
        "tensor(bool)": "bool",
    }
    return mapping.get(type_str, "float32")


@dataclass
class TorchRunner:
    """A Hugging Face checkpoint (or any module) run with PyTorch under ``inference_mode``."""

    model: ModelFile
    threads: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        import torch

        from engine.formats import hf

        if self.threads:
            torch.set_num_threads(self.threads)
        self.module = hf.load_model(self.model.path, task_head=True).to(self.device)
        self.inputs = [{"name": n, "shape": ["batch", "sequence"], "dtype": "int64"} for n in hf.input_names(self.model.path)]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.module(**{k: torch.from_numpy(v).to(self.device) for k, v in feeds.items()}, return_dict=True)
        first = out["logits"] if "logits" in out else out["last_hidden_state"]
        return [first.float().cpu().numpy()]


def make_runner(model: ModelFile, *, threads: int = 0, device: str = "cpu") -> Runner:
    if model.format == "onnx":
        return OnnxRunner(model, threads=threads, device=device)
    return TorchRunner(model, threads=threads, device=device)


def batches(
    inputs: list[dict[str, Any]],
    *,
    dataset: Dataset | None,
    batch_size: int,
    rows: int,
    sequence_length: int,
    tokenizer_folder: Any = None,
) -> list[dict[str, np.ndarray]]:
    """The same inputs for every model: dataset rows when there are any, else from the signature."""
    if dataset is not None and dataset.texts is not None and tokenizer_folder is not None:
        from engine.formats import hf

        tokenizer = hf.load_tokenizer(tokenizer_folder)
        texts = dataset.texts[:rows]
        out = []
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[start : start + batch_size],
                padding="max_length",
                truncation=True,
                max_length=sequence_length,
                return_tensors="np",
            )
            out.append({spec["name"]: enc[spec["name"]].astype(np.int64) for spec in inputs if spec["name"] in enc})
        return out
    if dataset is not None and dataset.arrays and all(spec["name"] in dataset.arrays for spec in inputs):
        n = min(rows, len(dataset))
        return [onnx_feeds(dataset, inputs, slice(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    rng = np.random.default_rng(0)
    count = max(1, rows // batch_size)
    return [
        onnx_model.sample_feeds(inputs, batch=batch_size, seq_len=sequence_length, rng=rng) for _ in range(count)
    ]
