"""Variants of one model timed against each other inside a pass, with the benchmark's own timer.

A pass that can deliver more than one model (an int8 one, a float one) times them side by side
with ``engine.bench.latency.measure_interleaved`` and the benchmark's runners, and compares them
with the benchmark's speedup interval: a variant is faster or slower only when that interval says
so, never on a bare median. The budget is small and fixed; on a noisy machine the intervals come
out wide and the verdict is "no significant difference", which the caller must treat as "not
faster".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Per batch size, for all variants together: the pass waits this long, not the user's benchmark.
TIME_BUDGET_SECONDS = 2.0
WARMUP_RUNS = 3
# Rounds timed at the least, budget or not: fewer cannot give a block bootstrap anything to resample.
MIN_RUNS = 10
MAX_RUNS = 5000
TARGET_CI_HALF_WIDTH = 0.02
# Distinct batches a timing cycles through, as the benchmark does.
TIMING_BATCHES = 8


def optimized_float(src: Path, dest: Path) -> Path | None:
    """onnxruntime's offline graph optimizations of ``src`` written to ``dest`` (float, the same
    function): constant folding, Conv + BatchNormalization folding, Conv + activation fusion.
    ``ORT_ENABLE_EXTENDED`` and not ``ALL``: the layout changes of ``ALL`` (NCHWc) are specific to
    the CPU they were made on, and a session applies them at load anyway. None when onnxruntime
    cannot write the graph (a model past protobuf's 2 GiB, for one)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(dest)
    try:
        ort.InferenceSession(str(src), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception:
        return None
    return dest if dest.is_file() else None


def rebatch(feeds: list[dict[str, np.ndarray]], batch_size: int) -> list[dict[str, np.ndarray]]:
    """The rows of ``feeds`` as up to ``TIMING_BATCHES`` batches of ``batch_size`` rows (one
    shorter batch when there are fewer rows)."""
    names = list(feeds[0])
    rows = {n: np.concatenate([f[n] for f in feeds]) for n in names}
    total = len(rows[names[0]])
    count = max(1, min(TIMING_BATCHES, total // batch_size))
    return [{n: rows[n][i * batch_size : (i + 1) * batch_size] for n in names} for i in range(count)]


def timing_batch_sizes(feeds: list[dict[str, np.ndarray]]) -> list[int]:
    """Batch size 1 (a request at a time, where int8's fixed costs weigh most) and the feeds' own."""
    first = next(iter(feeds[0].values()))
    return sorted({1, int(first.shape[0]) if first.ndim else 1})


@dataclass
class Timings:
    """Each variant's latencies in milliseconds (one per round), per batch size."""

    names: list[str]
    samples: dict[int, list[np.ndarray]]

    def speedup(self, base: str, cand: str, *, session_noise: float) -> dict[str, dict[str, Any]]:
        """``cand``'s speedup over ``base`` per batch size (keys as in the report: "1", "8"), with
        the benchmark's interval and verdict."""
        from engine.bench.latency import speedup

        i, j = self.names.index(base), self.names.index(cand)
        return {
            str(bs): speedup(samples[i], samples[j], session_noise=session_noise) for bs, samples in self.samples.items()
        }


def time_variants(paths: dict[str, Path], feeds: list[dict[str, np.ndarray]], *, batch_sizes: list[int] | None = None) -> Timings:
    """``paths``' models timed interleaved, at each of ``batch_sizes`` (default:
    ``timing_batch_sizes``), with the
    benchmark's onnxruntime runner at onnxruntime's default threads (as a job's benchmark runs
    by default)."""
    from engine.bench.latency import measure_interleaved
    from engine.bench.runners import make_runner
    from engine.model import ModelFile

    runners = [make_runner(ModelFile(path, "onnx")) for path in paths.values()]
    samples: dict[int, list[np.ndarray]] = {}
    for batch_size in sorted(set(batch_sizes)) if batch_sizes else timing_batch_sizes(feeds):
        samples[batch_size] = measure_interleaved(
            runners,
            rebatch(feeds, batch_size),
            warmup_runs=WARMUP_RUNS,
            min_runs=MIN_RUNS,
            max_runs=MAX_RUNS,
            time_budget_seconds=TIME_BUDGET_SECONDS,
            target_ci_half_width=TARGET_CI_HALF_WIDTH,
        ).samples
    return Timings(list(paths), samples)
