"""How close a candidate's outputs are to the original's, on the same inputs."""

from __future__ import annotations

from typing import Any

import numpy as np


def compare(reference: list[list[np.ndarray]], candidate: list[list[np.ndarray]]) -> dict[str, Any]:
    """``reference[b][o]``: output ``o`` of batch ``b``. Cosine is per row (sample) of output 0,
    flattened; max abs error over every output; top-1 agreement when output 0 looks like logits."""
    cosines: list[np.ndarray] = []
    max_abs = 0.0
    top1_same = top1_total = 0
    sq_err = 0.0
    count = 0
    for ref_outs, cand_outs in zip(reference, candidate, strict=True):
        for r, c in zip(ref_outs, cand_outs, strict=False):
            r64, c64 = r.astype(np.float64), c.astype(np.float64)
            if r64.shape != c64.shape:
                raise ValueError(f"output shapes differ: {r64.shape} vs {c64.shape}")
            diff = np.abs(r64 - c64)
            max_abs = max(max_abs, float(diff.max()) if diff.size else 0.0)
            sq_err += float((diff**2).sum())
            count += diff.size
        r0 = ref_outs[0].astype(np.float64).reshape(ref_outs[0].shape[0], -1)
        c0 = cand_outs[0].astype(np.float64).reshape(cand_outs[0].shape[0], -1)
        denom = np.linalg.norm(r0, axis=1) * np.linalg.norm(c0, axis=1)
        cosines.append(np.where(denom > 0, (r0 * c0).sum(axis=1) / np.maximum(denom, 1e-300), 1.0))
        if ref_outs[0].ndim == 2 and ref_outs[0].shape[1] > 1:
            top1_same += int((ref_outs[0].argmax(1) == cand_outs[0].argmax(1)).sum())
            top1_total += ref_outs[0].shape[0]
    cos = np.concatenate(cosines) if cosines else np.zeros(0)
    result: dict[str, Any] = {
        "cosine_mean": float(cos.mean()) if cos.size else None,
        "cosine_min": float(cos.min()) if cos.size else None,
        "max_abs_error": max_abs,
        "rmse": float(np.sqrt(sq_err / count)) if count else None,
        "rows": int(cos.size),
    }
    if top1_total:
        result["top1_agreement"] = top1_same / top1_total
    return result


def task_quality(outputs: list[list[np.ndarray]], labels: np.ndarray) -> dict[str, Any]:
    """Accuracy for class labels against logits; MSE for float targets."""
    logits = np.concatenate([o[0] for o in outputs])
    labels = labels[: len(logits)]
    if labels.dtype.kind in "iub" and logits.ndim == 2 and logits.shape[1] > 1:
        return {"accuracy": float((logits.argmax(1) == labels).mean()), "rows": int(len(labels))}
    pred = logits.reshape(len(labels), -1)
    target = labels.reshape(len(labels), -1).astype(np.float64)
    if pred.shape == target.shape:
        return {"mse": float(((pred - target) ** 2).mean()), "rows": int(len(labels))}
    return {}
