"""How close a candidate's outputs are to the original's, on the same inputs."""

from __future__ import annotations

from typing import Any

import numpy as np


def padding_masks(feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray | None]:
    """Each batch's ``attention_mask`` input (1 = a real token), where the model takes one."""
    return [f.get("attention_mask") for f in feeds]


def _without_padding(output: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Zero the positions of padding tokens in a per-token output ([batch, seq, ...]).

    Those positions are computed but meaningless: every consumer (pooling, token heads) masks them
    out, and quantization noise there would otherwise dominate a short sentence padded to 64."""
    if mask is None or output.ndim < 3 or output.shape[:2] != mask.shape:
        return output
    return output * mask.reshape(*mask.shape, *([1] * (output.ndim - 2))).astype(output.dtype)


def pool(output: np.ndarray, mask: np.ndarray | None, pooling: str) -> np.ndarray:
    """One embedding per row from a per-token output ([batch, seq, hidden]), as a sentence
    embedding model's pooling layer makes it: the mean or the maximum over real tokens, or the
    first token's. Outputs that are not per-token are returned as they are."""
    if output.ndim != 3:
        return output
    if pooling == "cls":
        return output[:, 0]
    real = np.ones(output.shape[:2], dtype=bool) if mask is None or mask.shape != output.shape[:2] else mask.astype(bool)
    if pooling == "max":
        return np.where(real[..., None], output, -np.inf).max(axis=1)
    weights = real[..., None].astype(np.float64)
    return (output * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)


def compare(
    reference: list[list[np.ndarray]],
    candidate: list[list[np.ndarray]],
    masks: list[np.ndarray | None] | None = None,
    *,
    pooling: str | None = None,
) -> dict[str, Any]:
    """``reference[b][o]``: output ``o`` of batch ``b``. Cosine is per row (sample) of output 0,
    flattened, or with ``pooling`` (``pool``: mean, cls or max) of its pooled embedding when output 0 is
    per-token; max abs error over every output; top-1 agreement when output 0 looks like logits.
    ``masks[b]`` (``padding_masks``): per-token outputs are compared on real tokens only."""
    cosines: list[np.ndarray] = []
    pooled = False
    max_abs = 0.0
    top1_same = top1_total = 0
    sq_err = 0.0
    count = 0
    for b, (ref_outs, cand_outs) in enumerate(zip(reference, candidate, strict=True)):
        mask = masks[b] if masks is not None else None
        ref_outs = [_without_padding(r, mask) for r in ref_outs]
        cand_outs = [_without_padding(c, mask) for c in cand_outs]
        for r, c in zip(ref_outs, cand_outs, strict=False):
            r64, c64 = r.astype(np.float64), c.astype(np.float64)
            if r64.shape != c64.shape:
                raise ValueError(f"output shapes differ: {r64.shape} vs {c64.shape}")
            diff = np.abs(r64 - c64)
            max_abs = max(max_abs, float(diff.max()) if diff.size else 0.0)
            sq_err += float((diff**2).sum())
            count += diff.size
        r0, c0 = ref_outs[0].astype(np.float64), cand_outs[0].astype(np.float64)
        if pooling is not None and r0.ndim == 3:
            r0, c0, pooled = pool(r0, mask, pooling), pool(c0, mask, pooling), True
        r0, c0 = r0.reshape(r0.shape[0], -1), c0.reshape(c0.shape[0], -1)
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
        # What the cosine compares: each row's whole output 0 (every real token of a per-token
        # output), or the sentence embedding pooled from it.
        "cosine_of": f"{pooling}_pooled" if pooled else "output",
    }
    if top1_total:
        result["top1_agreement"] = top1_same / top1_total
    return result


def _wilson(successes: int, total: int, z: float = 1.96) -> list[float]:
    """Wilson score interval of a proportion: honest at small counts and near 0 or 1."""
    if total == 0:
        return [0.0, 1.0]
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def _macro_f1(pred: np.ndarray, labels: np.ndarray) -> float:
    scores = []
    for cls in np.unique(np.concatenate([labels, pred])):
        tp = int(((pred == cls) & (labels == cls)).sum())
        fp = int(((pred == cls) & (labels != cls)).sum())
        fn = int(((pred != cls) & (labels == cls)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    return float(np.mean(scores)) if scores else 0.0


def task_quality(outputs: list[list[np.ndarray]], labels: np.ndarray) -> dict[str, Any]:
    """The task metric that fits the outputs and labels.

    - integer labels, logits [N, C>1]: accuracy (with a Wilson 95% interval), macro F1, top-5
      accuracy when C > 5;
    - integer labels in {0, 1}, one score per row: accuracy and F1 at 0.5 for probabilities,
      at 0 for logits;
    - float labels of the output's shape: MSE and MAE.

    ``correct`` (per-row 0/1) is kept for the paired comparison with the baseline and dropped from
    the report. Outputs that fit none of these give ``{}`` and a ``note``.
    """
    logits = np.concatenate([o[0] for o in outputs])
    labels = np.asarray(labels)[: len(logits)]
    n = len(labels)
    if labels.dtype.kind in "iub":
        labels = labels.reshape(n).astype(np.int64)
        if logits.ndim == 2 and logits.shape[1] > 1:
            pred = logits.argmax(1)
            correct = (pred == labels).astype(np.int8)
            result: dict[str, Any] = {
                "primary": "accuracy",
                "accuracy": float(correct.mean()),
                "accuracy_ci95": _wilson(int(correct.sum()), n),
                "f1_macro": _macro_f1(pred, labels),
                "rows": n,
                "correct": correct,
            }
            if logits.shape[1] > 5:
                top5 = np.argsort(-logits, axis=1)[:, :5]
                result["top5_accuracy"] = float((top5 == labels[:, None]).any(axis=1).mean())
            return result
        scores = logits.reshape(n, -1)
        if scores.shape[1] == 1 and set(np.unique(labels)) <= {0, 1}:
            s = scores[:, 0]
            threshold = 0.5 if (s.min() >= 0 and s.max() <= 1) else 0.0
            pred = (s > threshold).astype(np.int64)
            correct = (pred == labels).astype(np.int8)
            tp = int(((pred == 1) & (labels == 1)).sum())
            fp = int(((pred == 1) & (labels == 0)).sum())
            fn = int(((pred == 0) & (labels == 1)).sum())
            f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
            return {
                "primary": "accuracy",
                "accuracy": float(correct.mean()),
                "accuracy_ci95": _wilson(int(correct.sum()), n),
                "f1": float(f1),
                "rows": n,
                "correct": correct,
            }
    pred = logits.reshape(n, -1).astype(np.float64)
    target = labels.reshape(n, -1).astype(np.float64)
    if pred.shape == target.shape:
        err = pred - target
        return {"primary": "mse", "mse": float((err**2).mean()), "mae": float(np.abs(err).mean()), "rows": n}
    return {"note": f"labels of shape {list(labels.shape)} do not fit outputs of shape {list(logits.shape)}"}


HIGHER_IS_BETTER = {"accuracy": True, "f1_macro": True, "f1": True, "top5_accuracy": True, "mse": False, "mae": False}


def quality_change(base: dict[str, Any], cand: dict[str, Any], *, seed: int = 0) -> dict[str, Any] | None:
    """The candidate's change in the primary task metric, and for accuracy a paired 95% bootstrap
    interval of the change (the same rows scored by both models)."""
    metric = base.get("primary")
    if not metric or metric not in cand:
        return None
    delta = float(cand[metric] - base[metric])
    higher = HIGHER_IS_BETTER.get(metric, True)
    out: dict[str, Any] = {
        "metric": metric,
        "baseline": base[metric],
        "candidate": cand[metric],
        "delta": delta,
        "drop": -delta if higher else delta,
        "higher_is_better": higher,
    }
    b, c = base.get("correct"), cand.get("correct")
    if b is not None and c is not None and len(b) == len(c) and len(b) > 1:
        diff = c.astype(np.float64) - b.astype(np.float64)
        picks = np.random.default_rng(seed).integers(0, len(diff), size=(1000, len(diff)))
        means = diff[picks].mean(axis=1)
        out["delta_ci95"] = [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]
        out["rows_changed"] = int((diff != 0).sum())
    return out
