"""Latency measured interleaved: each round runs every model once on the same batch, in an order
that rotates, so that drift of the machine (thermal, other load) hits every model alike."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from engine.bench.runners import Runner


def bootstrap_ci(samples: np.ndarray, stat: Any = np.median, *, rounds: int = 1000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    n = len(samples)
    picks = rng.integers(0, n, size=(rounds, n))
    stats = stat(samples[picks], axis=1)
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def speedup_ci(base: np.ndarray, cand: np.ndarray, *, rounds: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap CI of median(base) / median(candidate), resampling paired rounds."""
    rng = np.random.default_rng(seed)
    n = min(len(base), len(cand))
    picks = rng.integers(0, n, size=(rounds, n))
    ratios = np.median(base[:n][picks], axis=1) / np.median(cand[:n][picks], axis=1)
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def summarize(samples_ms: np.ndarray) -> dict[str, Any]:
    lo, hi = bootstrap_ci(samples_ms)
    return {
        "p50": float(np.percentile(samples_ms, 50)),
        "p90": float(np.percentile(samples_ms, 90)),
        "p99": float(np.percentile(samples_ms, 99)),
        "mean": float(samples_ms.mean()),
        "p50_ci95": [lo, hi],
        "runs": int(len(samples_ms)),
    }


def measure_interleaved(
    runners: list[Runner],
    feeds: list[dict[str, np.ndarray]],
    *,
    warmup_runs: int,
    min_runs: int,
    max_runs: int,
    time_budget_seconds: float,
    target_ci_half_width: float,
) -> list[np.ndarray]:
    """Per runner, its latencies in milliseconds. Stops when every p50's CI is narrow enough
    (relative half-width), at ``max_runs``, or when the time budget is spent."""
    for i in range(warmup_runs):
        for r in runners:
            r.run(feeds[i % len(feeds)])
    samples: list[list[float]] = [[] for _ in runners]
    start = time.perf_counter()
    rounds = 0
    order = list(range(len(runners)))
    while rounds < max_runs:
        batch = feeds[rounds % len(feeds)]
        for idx in order:
            t0 = time.perf_counter()
            runners[idx].run(batch)
            samples[idx].append((time.perf_counter() - t0) * 1000.0)
        order = order[1:] + order[:1]
        rounds += 1
        if rounds >= min_runs and rounds % 10 == 0:
            if time.perf_counter() - start > time_budget_seconds:
                break
            if all(_narrow(np.asarray(s), target_ci_half_width) for s in samples):
                break
    return [np.asarray(s) for s in samples]


def _narrow(samples: np.ndarray, target: float) -> bool:
    lo, hi = bootstrap_ci(samples, rounds=200)
    mid = float(np.median(samples))
    return mid > 0 and (hi - lo) / 2 / mid <= target
