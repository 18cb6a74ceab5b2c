"""The unit a pipeline passes from step to step: a model on local disk and its format."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ModelFormat = Literal["onnx", "hf"]
FORMATS: tuple[ModelFormat, ...] = ("onnx", "hf")


@dataclass(frozen=True)
class ModelFile:
    """A model stored on local disk.

    ``onnx``: ``path`` is the ``.onnx`` file (external data, if any, lies beside it).
    ``hf``: ``path`` is a folder with ``config.json`` and ``*.safetensors`` (+ tokenizer files).
    ``origin`` is the format the user uploaded; a pass that converts ONNX to PyTorch and back keeps
    it, so the output is delivered in the input's format (docs/architecture.md, "Model formats").
    """

    path: Path
    format: ModelFormat
    origin: ModelFormat | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.path if self.format == "hf" else self.path.parent

    def with_path(self, path: Path, fmt: ModelFormat | None = None, **meta: Any) -> ModelFile:
        return ModelFile(
            path=Path(path),
            format=fmt or self.format,
            origin=self.origin or self.format,
            meta={**self.meta, **meta},
        )
