"""Size on disk, dense and compressed, and parameter counts."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from engine.model import ModelFile


def model_files(model: ModelFile) -> list[Path]:
    if model.format == "hf":
        return sorted(p for p in model.path.iterdir() if p.suffix in (".safetensors", ".json"))
    files = [model.path]
    files += [p for p in model.path.parent.iterdir() if p != model.path and p.suffix in (".data", ".bin", "")]
    return [p for p in files if p.is_file()]


def size_on_disk(model: ModelFile) -> dict[str, int]:
    """Dense bytes and deflate-compressed bytes: sparsity only saves space once compressed."""
    dense = 0
    compressor = zlib.compressobj(6)
    compressed = 0
    for path in model_files(model):
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                dense += len(chunk)
                compressed += len(compressor.compress(chunk))
    compressed += len(compressor.flush())
    return {"size_bytes": dense, "compressed_size_bytes": compressed}


def weight_arrays(model: ModelFile) -> list[np.ndarray]:
    if model.format == "onnx":
        from onnx import numpy_helper

        from engine.formats.onnx_model import load_proto

        return [numpy_helper.to_array(t) for t in load_proto(model.path).graph.initializer]
    from safetensors.numpy import load_file

    arrays: list[np.ndarray] = []
    for file in sorted(model.path.glob("*.safetensors")):
        try:
            arrays.extend(load_file(str(file)).values())
        except (TypeError, ValueError):  # bf16 has no numpy dtype: go through torch
            from safetensors.torch import load_file as load_torch

            arrays.extend(t.float().numpy() for t in load_torch(str(file)).values())
    return arrays


def parameter_counts(model: ModelFile) -> dict[str, Any]:
    total = nonzero = 0
    for arr in weight_arrays(model):
        total += arr.size
        nonzero += int(np.count_nonzero(arr))
    return {"params": total, "nonzero_params": nonzero, "sparsity": (1 - nonzero / total) if total else 0.0}
