"""Benchmark precision: how narrow the p50 interval gets, and how much the p50 moves between runs.

    .venv/bin/python -m bench.bench_precision [--repeats 3] [--budget 30] [--target 0.03]

MiniLM-L6 (ONNX, fp32) is benchmarked against its dynamic-int8 copy, interleaved, by the same
code a job uses (``engine.bench.report.benchmark_models``), ``--repeats`` times. Each run stops
when every p50 interval and the speedup interval are narrower than ``--target`` (relative
half-width) or when ``--budget`` seconds per model are spent. For every run and model the table
gives the p50, its 95% interval and half-width, the rounds and seconds it took, and why it
stopped; then the speedup with its interval, and how far the p50s of the repeats lie apart,
which an honest interval should roughly cover.

Target: half-width <= 3% within 30 s per model on the development machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import materials
from engine.bench.config import BenchmarkConfig
from engine.bench.report import CandidateInput, benchmark_models
from engine.model import ModelFile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per model and batch size")
    parser.add_argument("--target", type=float, default=0.03, help="relative half-width of the 95%% intervals")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (0: the runtime's default)")
    args = parser.parse_args()

    from onnxruntime.quantization import QuantType, quantize_dynamic

    baseline = ModelFile(path=materials.minilm_onnx(), format="onnx")
    folder = Path(tempfile.mkdtemp(prefix="shrink-bench-"))
    int8_path = folder / "model.onnx"
    quantize_dynamic(str(baseline.path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True)
    candidate = CandidateInput("int8", ModelFile(path=int8_path, format="onnx"))
    config = BenchmarkConfig(
        batch_sizes=[args.batch_size],
        sequence_length=args.sequence_length,
        threads=args.threads,
        time_budget_seconds=args.budget,
        target_ci_half_width=args.target,
        max_runs=100_000,
        fidelity_rows=8,
        measure_memory=False,
    )
    key = str(args.batch_size)
    print(f"MiniLM-L6 ONNX fp32 vs dynamic int8, batch {key}, {args.sequence_length} tokens, "
          f"{args.threads or 'default'} thread(s), target half-width {args.target:.1%}, budget {args.budget:.0f} s/model")
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at start")
    header = f"{'run':>3}  {'model':<8} {'p50 ms':>8}  {'95% interval':>17}  {'half-width':>10}  {'rounds':>6}  {'seconds':>7}  stopped by"
    print(header)
    print("(rounds and seconds: the interleaved timing of both models together; the budget is 2 x per model)")
    print("-" * len(header))
    p50s: dict[str, list[float]] = {"baseline": [], "int8": []}
    speedups = []
    met = 0
    for run in range(1, args.repeats + 1):
        started = time.perf_counter()
        report = benchmark_models(baseline, [candidate], dataset=None, config=config)
        wall = time.perf_counter() - started
        for name, metrics in (("baseline", report["baseline"]), ("int8", report["candidates"][0]["metrics"])):
            lat = metrics["latency_ms"][key]
            lo, hi = lat["p50_ci95"]
            half = lat["p50_ci95_half_width_rel"]
            met += half <= args.target
            p50s[name].append(lat["p50"])
            print(f"{run:>3}  {name:<8} {lat['p50']:>8.3f}  [{lo:>7.3f}, {hi:>7.3f}]  {half:>9.2%}  {lat['runs']:>6}  "
                  f"{lat['seconds']:>7.1f}  {lat['stopped_by']}")
        speed = report["candidates"][0]["ratios"]["speedup"][key]
        speedups.append(speed)
        print(f"{'':>3}  speedup  {speed['value']:>8.3f}x [{speed['ci95'][0]:.3f}, {speed['ci95'][1]:.3f}]  "
              f"({speed['verdict']}; whole run {wall:.1f} s with sizes and fidelity)")
    print()
    for name, values in p50s.items():
        spread = max(values) / min(values) - 1
        print(f"{name:<8} p50 over {len(values)} runs: {min(values):.3f} .. {max(values):.3f} ms (spread {spread:.1%})")
    values = [s["value"] for s in speedups]
    print(f"speedup over {len(values)} runs: {min(values):.3f} .. {max(values):.3f}x")
    total = 2 * args.repeats
    print(f"target met (half-width <= {args.target:.0%} within the budget): {met}/{total} measurements")
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0 if met == total else 1


if __name__ == "__main__":
    sys.exit(main())
