"""What the attention-fusion tests share: padded feeds for a tiny BERT, a graph's op types and
its outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.formats import onnx_model


def padded_feeds(seq: int, rows: int = 6) -> list[dict[str, np.ndarray]]:
    """Right-padded, left-padded and holed masks: a fused kernel must honour all of them."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 200, size=(rows, seq)).astype(np.int64)
    right = (np.arange(seq)[None, :] < rng.integers(3, seq + 1, size=(rows, 1))).astype(np.int64)
    holed = (rng.random((rows, seq)) > 0.3).astype(np.int64)
    holed[:, 0] = 1
    types = np.zeros_like(ids)
    return [
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        for mask in (right, np.ascontiguousarray(right[:, ::-1]), holed)
    ]


def ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx_model.load_proto(path, with_data=False).graph.node]


def outputs(path: Path, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    session = onnx_model.session(path)
    return [session.run(None, f)[0] for f in feeds]
