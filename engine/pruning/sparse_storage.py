"""What unstructured pruning saved: non-zeros, and the size dense and deflate-compressed.

Zeros in dense tensors save nothing until the file is compressed (the job ships such models
deflated, engine.job.package_model), and nothing in latency: the report says both.
"""

from __future__ import annotations

from typing import Any

from engine.model import ModelFile


def storage_report(original: ModelFile, pruned: ModelFile) -> dict[str, Any]:
    from engine.bench.sizes import parameter_counts, size_on_disk

    counts = parameter_counts(pruned)
    before, after = size_on_disk(original), size_on_disk(pruned)
    return {
        "params": counts["params"],
        "nonzero_params": counts["nonzero_params"],
        "sparsity": counts["sparsity"],
        "size_bytes": after["size_bytes"],
        "compressed_size_bytes": after["compressed_size_bytes"],
        "original_size_bytes": before["size_bytes"],
        "original_compressed_size_bytes": before["compressed_size_bytes"],
        "speedup": "not claimed: zeros in dense kernels; see the job's benchmark",
    }
