"""Latency measured interleaved, with confidence intervals that survive a noisy machine.

Each round runs every model once on the same batch, in an order that rotates, so that drift of the
machine (thermal, other tenants' load) hits every model alike. The rounds are what we resample:

- Intervals come from a *circular block bootstrap* over rounds, not an i.i.d. one. On a shared
  machine slow runs come in bursts (another process takes the core for a while), so neighbouring
  rounds are correlated; resampling single rounds then gives intervals that are too narrow, and
  two identical models would "differ". Blocks of about ``sqrt(n)`` consecutive rounds keep the
  bursts together. Simulated (150 rounds, slow spells of ~10 rounds a quarter of the time), the
  95% interval of the median held the true median 86% of the time with these blocks, 71% with
  ``n ** (1/3)`` blocks and 57% with an i.i.d. bootstrap; on i.i.d. noise, 90% against 95%.
- The speedup interval resamples baseline and candidate *paired* (the same rounds for both), so a
  burst that slowed both models in a round cancels in the ratio.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from engine.bench.runners import Runner

QUANTILES = (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99)
HISTOGRAM_BINS = 40


def block_length(n: int) -> int:
    return max(1, min(n, round(math.sqrt(n))))


def _block_indices(n: int, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """``rounds`` x ``n`` indices of a circular block bootstrap."""
    length = block_length(n)
    blocks = math.ceil(n / length)
    starts = rng.integers(0, n, size=(rounds, blocks))
    picks = (starts[:, :, None] + np.arange(length)[None, None, :]) % n
    return picks.reshape(rounds, blocks * length)[:, :n]


def bootstrap_ci(
    samples: np.ndarray, stat: Callable[..., Any] = np.median, *, rounds: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of ``stat`` (applied along axis 1) under a circular block bootstrap."""
    samples = np.asarray(samples, dtype=np.float64)
    if len(samples) < 2:
        value = float(samples[0]) if len(samples) else float("nan")
        return value, value
    picks = _block_indices(len(samples), rounds, np.random.default_rng(seed))
    stats = stat(samples[picks], axis=1)
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def speedup_ci(base: np.ndarray, cand: np.ndarray, *, rounds: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% interval of median(base) / median(candidate), resampling paired rounds in blocks."""
    n = min(len(base), len(cand))
    base = np.asarray(base[:n], dtype=np.float64)
    cand = np.asarray(cand[:n], dtype=np.float64)
    if n < 2:
        value = float(base[0] / cand[0]) if n else float("nan")
        return value, value
    picks = _block_indices(n, rounds, np.random.default_rng(seed))
    ratios = np.median(base[picks], axis=1) / np.median(cand[picks], axis=1)
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def speedup(base: np.ndarray, cand: np.ndarray, *, session_noise: float = 0.0) -> dict[str, Any]:
    """The candidate's speedup over the baseline, its interval, and what the interval lets us say.

    Resampling rounds captures the noise within one run, not the difference between two runtime
    sessions: two onnxruntime sessions of the very same model file run ~1% apart, one way or the
    other, for as long as they live (memory layout). Measured on the development machine: 36 fresh
    pairs of sessions of one model, speedup spread with a standard deviation of 1.2%, and 11% of
    the resampling intervals excluded 1. ``session_noise`` (that standard deviation, relative) is
    added in quadrature, in log space, to each side of the interval (``ci95``); the resampling
    interval alone is kept as ``ci95_within_run``.
    """
    lo, hi = speedup_ci(base, cand)
    value = float(np.median(base) / np.median(cand))
    floor = 1.96 * session_noise
    lo_w = value * math.exp(-math.hypot(math.log(value / lo), floor)) if lo > 0 else lo
    hi_w = value * math.exp(math.hypot(math.log(hi / value), floor)) if value > 0 else hi
    verdict = "faster" if lo_w > 1.0 else "slower" if hi_w < 1.0 else "no_significant_difference"
    return {"value": value, "ci95": [lo_w, hi_w], "ci95_within_run": [lo, hi], "verdict": verdict}


def summarize(samples_ms: np.ndarray) -> dict[str, Any]:
    samples_ms = np.asarray(samples_ms, dtype=np.float64)
    lo, hi = bootstrap_ci(samples_ms)
    p50 = float(np.percentile(samples_ms, 50))
    return {
        "p50": p50,
        "p90": float(np.percentile(samples_ms, 90)),
        "p99": float(np.percentile(samples_ms, 99)),
        "mean": float(samples_ms.mean()),
        "min": float(samples_ms.min()),
        "max": float(samples_ms.max()),
        "p50_ci95": [lo, hi],
        "p50_ci95_half_width_rel": (hi - lo) / 2 / p50 if p50 > 0 else None,
        "runs": int(len(samples_ms)),
        "quantiles": {f"p{round(q * 100)}": float(np.percentile(samples_ms, q * 100)) for q in QUANTILES},
    }


def histograms(samples: Sequence[np.ndarray], *, bins: int = HISTOGRAM_BINS) -> list[dict[str, Any]]:
    """One histogram per model on shared, log-spaced bin edges (so a page can overlay them, and a
    2x faster model sits as far from the baseline as a 2x slower one). The edges span the 1st to
    99th percentiles of all models pooled; runs outside are counted in the first or last bin
    (``p99`` and ``max`` carry the tail)."""
    pooled = np.concatenate([np.asarray(s, dtype=np.float64) for s in samples])
    low, high = (float(x) for x in np.percentile(pooled, [1, 99]))
    low = max(low, 1e-6)
    if not high > low * 1.001:
        low, high = low * 0.98, low * 1.02
    edges = np.geomspace(low, high, bins + 1)
    out = []
    for s in samples:
        clipped = np.clip(np.asarray(s, dtype=np.float64), low, high)
        counts, _ = np.histogram(clipped, bins=edges)
        out.append({"edges": [float(f"{e:.6g}") for e in edges], "counts": counts.astype(int).tolist(), "scale": "log"})
    return out


@dataclass
class Timing:
    """Per runner, its latencies in milliseconds (one per round), and why timing stopped."""

    samples: list[np.ndarray]
    stopped_by: Literal["target_ci", "time_budget", "max_runs"]
    seconds: float


def measure_interleaved(
    runners: list[Runner],
    feeds: list[dict[str, np.ndarray]],
    *,
    warmup_runs: int,
    min_runs: int,
    max_runs: int,
    time_budget_seconds: float,
    target_ci_half_width: float,
) -> Timing:
    """Time ``runners`` round after round on ``feeds`` (one batch per round, cycling).

    Stops when every model's p50 interval and every candidate's speedup interval (against
    ``runners[0]``) is narrower than ``target_ci_half_width`` (relative half-width), at
    ``max_runs`` rounds, or when ``time_budget_seconds`` is spent (the warm-up counts too, so a
    slow model cannot overrun the budget); never before ``min_runs`` rounds.
    """
    start = time.perf_counter()
    for i in range(warmup_runs):
        for r in runners:
            r.run(feeds[i % len(feeds)])
    samples: list[list[float]] = [[] for _ in runners]
    rounds = 0
    order = list(range(len(runners)))
    next_check = min_runs
    stopped_by: Literal["target_ci", "time_budget", "max_runs"] = "max_runs"
    while rounds < max_runs:
        batch = feeds[rounds % len(feeds)]
        for idx in order:
            t0 = time.perf_counter()
            runners[idx].run(batch)
            samples[idx].append((time.perf_counter() - t0) * 1000.0)
        order = order[1:] + order[:1]
        rounds += 1
        if rounds >= min_runs and time.perf_counter() - start > time_budget_seconds:
            stopped_by = "time_budget"
            break
        if rounds >= next_check:
            # Checking costs a bootstrap per model: do it at geometric steps (every ~10%).
            next_check = rounds + max(10, rounds // 10)
            arrays = [np.asarray(s) for s in samples]
            if all(_narrow(a, target_ci_half_width) for a in arrays) and all(
                _speedup_narrow(arrays[0], a, target_ci_half_width) for a in arrays[1:]
            ):
                stopped_by = "target_ci"
                break
    return Timing([np.asarray(s) for s in samples], stopped_by, time.perf_counter() - start)


# The stopping rule computes exactly the intervals the report will show (same resampling, same
# seed), so a run that stopped on its target never reports an interval wider than the target.


def _narrow(samples: np.ndarray, target: float) -> bool:
    lo, hi = bootstrap_ci(samples)
    mid = float(np.median(samples))
    return mid > 0 and (hi - lo) / 2 / mid <= target


def _speedup_narrow(base: np.ndarray, cand: np.ndarray, target: float) -> bool:
    lo, hi = speedup_ci(base, cand)
    mid = float(np.median(base) / np.median(cand))
    return mid > 0 and (hi - lo) / 2 / mid <= target
