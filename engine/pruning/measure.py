"""What a pruning pass reports about the PyTorch module it holds: parameters and MACs.

Files on disk are measured by ``engine.bench.sizes`` (size dense/compressed, non-zeros); MACs are
counted by ``engine.bench.macs`` (FlopCounterMode), the same counter the job's benchmark uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.formats.torch_model import TorchModel

# Transformers' MACs grow with the sequence: report them at a stated, typical length.
MACS_SEQUENCE_LENGTH = 128


def parameter_count(module: Any) -> int:
    """Parameters plus float weight buffers (onnx2torch keeps MatMul weights as buffers)."""
    seen: set[int] = set()
    total = 0
    for tensor in [
        *module.parameters(),
        *(b for b in module.buffers() if b.is_floating_point() and b.dim() >= 2),
    ]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel()
    return total


class _InMemoryRunner:
    """What ``engine.bench.macs.count_macs`` asks of a PyTorch runner, for a module in memory."""

    def __init__(self, tm: TorchModel):
        self.tm = tm

    def torch_call(self, feed: dict[str, Any]) -> tuple[Any, Any]:
        import torch

        device = next((p.device for p in self.tm.module.parameters()), torch.device("cpu"))
        tensors = {k: torch.from_numpy(v).to(device) for k, v in feed.items()}
        if self.tm.kind == "hf":
            return self.tm.module, {k: v for k, v in tensors.items() if k in self.tm.input_names}
        return self.tm.module, tuple(tensors[n] for n in self.tm.input_names)


def macs_sequence_length(tm: TorchModel) -> int:
    """128 tokens, or fewer for a model whose position table is shorter."""
    limit = getattr(getattr(tm.module, "config", None), "max_position_embeddings", None)
    return min(MACS_SEQUENCE_LENGTH, int(limit)) if limit else MACS_SEQUENCE_LENGTH


def count_macs(tm: TorchModel) -> int:
    """MACs of one inference at batch size 1, counted as the job's benchmark counts them."""
    from engine.bench import macs
    from engine.errors import InternalEngineError

    feeds = tm.example_feeds(batch=1, seq_len=macs_sequence_length(tm))
    feed = {k: v.numpy() for k, v in feeds.items()}
    was_training = tm.module.training
    tm.module.eval()
    try:
        counted = macs.count_macs(tm.source, _InMemoryRunner(tm), feed)
    finally:
        tm.module.train(was_training)
    if counted["macs"] is None:
        raise InternalEngineError(f"could not count the model's MACs: {counted.get('macs_error')}")
    return int(counted["macs"])


def module_summary(tm: TorchModel) -> dict[str, Any]:
    macs = count_macs(tm)
    out: dict[str, Any] = {"params": parameter_count(tm.module), "macs": macs}
    if tm.kind == "hf":
        out["macs_sequence_length"] = macs_sequence_length(tm)
    return out
