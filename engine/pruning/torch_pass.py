"""What the PyTorch pruning passes check before they run."""

from __future__ import annotations

from typing import TypeVar

from engine.context import PassContext
from engine.model import ModelFile
from engine.pruning.recovery import RecoveryOptions
from engine.registry import Pass

RecoveryConfigT = TypeVar("RecoveryConfigT", bound=RecoveryOptions)


class TorchPrunePass(Pass[RecoveryConfigT]):
    """Base of prune.magnitude and prune.structured (not registered: it has no op/method)."""

    def check(self, model: ModelFile, ctx: PassContext) -> None:
        super().check(model, ctx)
        if self.config.max_metric_drop is not None:
            ctx.require_dataset(f"{self.name}: max_metric_drop is measured on a validation split")
        if model.format == "onnx":
            # Refuse before any work, naming the operators onnx2torch lacks.
            from engine.formats.onnx_model import load_proto
            from engine.formats.torch_bridge import require_convertible

            require_convertible(load_proto(model.path, with_data=False))
