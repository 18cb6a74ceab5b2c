"""The benchmark report: baseline and every candidate measured side by side.

Every number of every model comes from the same code, on the same inputs, in the same process:
fidelity and quality on the same rows, latency in interleaved rounds, MACs on the same batch,
peak memory in one child process per model, fed the same batches.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine import hardware
from engine.bench import fidelity, latency, macs, memory, sizes
from engine.bench.config import BenchmarkConfig
from engine.bench.runners import Runner, batches, feeds_from_dataset, make_runner, package_version
from engine.data import Dataset
from engine.formats import hf
from engine.model import ModelFile

REPORT_VERSION = 1
# Distinct batches a latency run cycles through: enough that no single input dominates.
TIMING_BATCHES = 8


@dataclass
class CandidateInput:
    id: str
    model: ModelFile
    recipe: list[dict[str, Any]] = field(default_factory=list)
    # Quality bounds for this candidate, over the benchmark config's: ``min_cosine``,
    # ``max_quality_drop``.
    extra: dict[str, Any] = field(default_factory=dict)


def environment(config: BenchmarkConfig, runners: list[Runner] | None = None) -> dict[str, Any]:
    """What a reader needs to reproduce the numbers: runtime and versions, device, threads, CPU."""
    described = [r.describe() for r in runners or []]
    first = described[0] if described else {}
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    env: dict[str, Any] = {
        "runtime": first.get("runtime", config.runtime),
        "runtime_version": first.get("version"),
        "device": config.device,
        "providers": first.get("providers", []),
        "threads": config.threads or "runtime default",
        "intra_op_threads": first.get("intra_op_threads"),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "onnxruntime": package_version("onnxruntime"),
        "torch": package_version("torch"),
        "onnx": package_version("onnx"),
        "numpy": np.__version__,
        **hardware.cpu_info(),
    }
    if "gpu" in first:
        env["gpu"] = first["gpu"]
    with contextlib.suppress(OSError):
        env["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return env


def _resolve_bounds(config: BenchmarkConfig, cand: CandidateInput) -> dict[str, Any]:
    return {
        "min_cosine": cand.extra.get("min_cosine", config.min_cosine),
        "max_quality_drop": cand.extra.get("max_quality_drop", config.max_quality_drop),
    }


def _flags(metrics: dict[str, Any], ratios: dict[str, Any], bounds: dict[str, Any]) -> dict[str, str]:
    """Flags and why: a candidate measurably slower than the baseline at some batch size, or
    outside the quality bound. A flagged candidate is never chosen as the best."""
    reasons: dict[str, str] = {}
    slower = [bs for bs, s in ratios["speedup"].items() if s["verdict"] == "slower"]
    if slower:
        worst = min(ratios["speedup"][bs]["value"] for bs in slower)
        reasons["slower_than_baseline"] = (
            f"slower than the baseline at batch size {', '.join(slower)} (speedup {worst:.2f}x, "
            "95% interval entirely below 1)"
        )
    quality_reasons = []
    cos = metrics.get("fidelity", {}).get("cosine_mean")
    if bounds["min_cosine"] is not None and cos is not None and cos < bounds["min_cosine"]:
        quality_reasons.append(f"output cosine {cos:.4f} < {bounds['min_cosine']}")
    change = ratios.get("quality_change")
    if bounds["max_quality_drop"] is not None and change and change["drop"] > bounds["max_quality_drop"]:
        quality_reasons.append(
            f"{change['metric']} worse by {change['drop']:.4g} > {bounds['max_quality_drop']}"
        )
    if quality_reasons:
        reasons["below_quality_bound"] = "; ".join(quality_reasons)
    return reasons


def _ratio(base: float | None, cand: float | None) -> float | None:
    if base is None or cand is None or cand <= 0:
        return None
    return float(base) / float(cand)


def _pooling(config: BenchmarkConfig, checkpoint: Path | None) -> str | None:
    """The sentence-embedding pooling the cosine compares (None: every real token's output)."""
    if config.fidelity_pooling == "auto":
        return hf.sentence_pooling(checkpoint) if checkpoint is not None else None
    return None if config.fidelity_pooling == "none" else config.fidelity_pooling


def benchmark_models(
    baseline: ModelFile,
    candidates: list[CandidateInput],
    *,
    dataset: Dataset | None,
    config: BenchmarkConfig,
    progress: Any = None,
    tokenizer_folder: Path | None = None,
) -> dict[str, Any]:
    """Measure baseline and candidates on the same inputs in this process, interleaved.

    ``tokenizer_folder``: where the tokenizer of a text dataset lives when the baseline is not
    the Hugging Face checkpoint itself (a checkpoint exported to ONNX for onnxruntime)."""
    started = time.time()
    say = progress or (lambda fraction, message: None)
    runtime = "torch" if config.runtime == "torch" else None
    models = [baseline, *[c.model for c in candidates]]
    say(0.0, "loading the models")
    runners = [make_runner(m, threads=config.threads, device=config.device, runtime=runtime) for m in models]
    env = environment(config, runners)
    if tokenizer_folder is None and baseline.format == "hf":
        tokenizer_folder = baseline.path
    notes: list[str] = []
    pooling = _pooling(config, tokenizer_folder)
    metrics: list[dict[str, Any]] = [
        {
            **sizes.size_on_disk(m),
            **sizes.parameter_counts(m),
            "runtime": r.describe(),
            "latency_ms": {},
            "throughput_per_s": {},
        }
        for m, r in zip(models, runners, strict=True)
    ]

    def inputs(batch_size: int, rows: int, *, full: bool) -> list[dict[str, np.ndarray]]:
        return batches(
            runners[0].inputs,
            dataset=dataset,
            batch_size=batch_size,
            rows=rows,
            sequence_length=config.sequence_length,
            tokenizer_folder=tokenizer_folder,
            full_batches=full,
        )

    # Fidelity and task quality: every model on the same rows.
    say(0.02, "fidelity and quality")
    eval_feeds = inputs(max(config.batch_sizes), config.fidelity_rows, full=False)
    outputs = [[r.run(f) for f in eval_feeds] for r in runners]
    labels = dataset.labels if dataset is not None else None
    if labels is not None and not feeds_from_dataset(runners[0].inputs, dataset, tokenizer_folder):
        notes.append(
            "the dataset's labels were not used: its rows cannot feed the model (text without a "
            "tokenizer, or arrays not named after the model's inputs), so inputs were generated"
        )
        labels = None
    quality = [fidelity.task_quality(o, labels) if labels is not None else None for o in outputs]
    for i, m in enumerate(metrics):
        if i > 0:
            try:
                m["fidelity"] = fidelity.compare(
                    outputs[0], outputs[i], fidelity.padding_masks(eval_feeds), pooling=pooling
                )
            except ValueError as exc:  # outputs of another shape: nothing to compare, say so
                m["fidelity"] = {"error": str(exc)}
        if quality[i] is not None:
            m["quality"] = {k: v for k, v in quality[i].items() if k != "correct"}
    del outputs

    # MACs, per sample (batch size 1) on the first input row.
    say(0.05, "counting MACs")
    mac_feed = inputs(1, 1, full=True)[0]
    for m, model, r in zip(metrics, models, runners, strict=True):
        m.update(macs.count_macs(model, r, mac_feed))

    # Latency: interleaved rounds per batch size.
    speedups: list[dict[str, Any]] = [{} for _ in candidates]
    timing_share = 0.85 if config.measure_memory else 0.93
    for step, batch_size in enumerate(config.batch_sizes):
        say(0.07 + timing_share * step / len(config.batch_sizes), f"timing batch size {batch_size}")
        timing = latency.measure_interleaved(
            runners,
            inputs(batch_size, batch_size * TIMING_BATCHES, full=True),
            warmup_runs=config.warmup_runs,
            min_runs=config.min_runs,
            max_runs=config.max_runs,
            time_budget_seconds=config.time_budget_seconds * len(runners),
            target_ci_half_width=config.target_ci_half_width,
        )
        key = str(batch_size)
        hists = latency.histograms(timing.samples)
        for i, (m, s) in enumerate(zip(metrics, timing.samples, strict=True)):
            m["latency_ms"][key] = {
                **latency.summarize(s),
                "histogram": hists[i],
                "stopped_by": timing.stopped_by,
                "seconds": round(timing.seconds, 3),
            }
            m["throughput_per_s"][key] = batch_size * 1000.0 / float(np.median(s))
            if i > 0:
                speedups[i - 1][key] = latency.speedup(timing.samples[0], s, session_noise=config.session_noise)

    if config.measure_memory:
        say(0.93, "peak memory, one child process per model")
        mem_feeds = {bs: inputs(bs, bs, full=True)[0] for bs in config.batch_sizes}
        for m, model in zip(metrics, models, strict=True):
            m["memory"] = memory.measure_peak_memory(
                model, mem_feeds, runtime=runtime, device=config.device, threads=config.threads
            )

    base = metrics[0]
    largest = str(max(config.batch_sizes))
    out_candidates = []
    for i, cand in enumerate(candidates):
        m = metrics[i + 1]
        ratios: dict[str, Any] = {
            "speedup": speedups[i],
            "throughput": {
                bs: _ratio(m["throughput_per_s"][bs], base["throughput_per_s"][bs]) for bs in m["throughput_per_s"]
            },
            "size": _ratio(base["size_bytes"], m["size_bytes"]),
            "compressed_size": _ratio(base["compressed_size_bytes"], m["compressed_size_bytes"]),
            "params": _ratio(base["params"], m["params"]),
            "nonzero_params": _ratio(base["nonzero_params"], m["nonzero_params"]),
            "macs": _ratio(base.get("macs"), m.get("macs")),
            "peak_memory": _ratio(
                base.get("memory", {}).get("peak_above_idle_bytes", {}).get(largest),
                m.get("memory", {}).get("peak_above_idle_bytes", {}).get(largest),
            ),
        }
        if quality[0] is not None and quality[i + 1] is not None:
            ratios["quality_change"] = fidelity.quality_change(quality[0], quality[i + 1])
        bounds = _resolve_bounds(config, cand)
        reasons = _flags(m, ratios, bounds)
        out_candidates.append(
            {
                "id": cand.id,
                "recipe": cand.recipe,
                "metrics": m,
                "ratios": ratios,
                "flags": list(reasons),
                "flag_reasons": reasons,
                "quality_bound": bounds,
            }
        )
    say(1.0, "benchmark done")
    env["load_average_after"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {
        "report_version": REPORT_VERSION,
        "baseline": base,
        "candidates": out_candidates,
        "environment": env,
        "config": config.model_dump(),
        "notes": notes,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "benchmark_seconds": round(time.time() - started, 3),
    }


def choose_best(report: dict[str, Any]) -> str | None:
    """The fastest unflagged candidate (median speedup over batch sizes); None if all are flagged."""
    good = [c for c in report["candidates"] if not c["flags"]]
    if not good:
        return None

    def score(c: dict[str, Any]) -> float:
        values = [v["value"] for v in c["ratios"]["speedup"].values()]
        return float(np.median(values)) if values else 0.0

    return max(good, key=score)["id"]
