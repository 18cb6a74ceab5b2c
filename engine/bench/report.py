"""The benchmark report: baseline and every candidate measured side by side (DESIGN.md 5)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.bench import fidelity, latency, sizes
from engine.bench.config import BenchmarkConfig
from engine.bench.runners import batches, make_runner
from engine.data import Dataset
from engine.model import ModelFile


@dataclass
class CandidateInput:
    id: str
    model: ModelFile
    recipe: list[dict[str, Any]] = field(default_factory=list)
    # Quality bound from the spec (e.g. fidelity cosine), used for flags.
    extra: dict[str, Any] = field(default_factory=dict)


def environment(config: BenchmarkConfig, providers: list[str] | None = None) -> dict[str, Any]:
    import onnxruntime

    env: dict[str, Any] = {
        "runtime": config.runtime,
        "device": config.device,
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": config.threads or os.cpu_count(),
        "providers": providers or [],
    }
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            info = fh.read()
        model_line = next((ln for ln in info.splitlines() if ln.startswith("model name")), "")
        flags_line = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
        env["cpu"] = model_line.split(":", 1)[-1].strip()
        wanted = ("avx", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "fma", "f16c", "amx_int8")
        env["cpu_flags"] = [f for f in flags_line.split(":", 1)[-1].split() if f in wanted]
    except OSError:
        pass
    return env


def benchmark_models(
    baseline: ModelFile,
    candidates: list[CandidateInput],
    *,
    dataset: Dataset | None,
    config: BenchmarkConfig,
    progress: Any = None,
) -> dict[str, Any]:
    """Measure baseline and candidates on the same inputs in this process, interleaved."""
    runners = [make_runner(baseline, threads=config.threads, device=config.device)]
    runners += [make_runner(c.model, threads=config.threads, device=config.device) for c in candidates]
    tokenizer_folder = baseline.path if baseline.format == "hf" else None
    base_metrics: dict[str, Any] = {**sizes.size_on_disk(baseline), **sizes.parameter_counts(baseline), "latency_ms": {}}
    cand_metrics = [
        {**sizes.size_on_disk(c.model), **sizes.parameter_counts(c.model), "latency_ms": {}} for c in candidates
    ]
    ratios: list[dict[str, Any]] = [{"speedup": {}} for _ in candidates]

    # Fidelity and quality, on the first batch size's inputs.
    eval_feeds = batches(
        runners[0].inputs,
        dataset=dataset,
        batch_size=max(config.batch_sizes),
        rows=config.fidelity_rows,
        sequence_length=config.sequence_length,
        tokenizer_folder=tokenizer_folder,
    )
    reference = [runners[0].run(f) for f in eval_feeds]
    labels = dataset.labels if dataset is not None else None
    if labels is not None:
        base_metrics["quality"] = fidelity.task_quality(reference, labels)
    for i, runner in enumerate(runners[1:]):
        outs = [runner.run(f) for f in eval_feeds]
        cand_metrics[i]["fidelity"] = fidelity.compare(reference, outs)
        if labels is not None:
            cand_metrics[i]["quality"] = fidelity.task_quality(outs, labels)

    for step, batch_size in enumerate(config.batch_sizes):
        if progress:
            progress(step / len(config.batch_sizes), f"timing batch size {batch_size}")
        feeds = batches(
            runners[0].inputs,
            dataset=dataset,
            batch_size=batch_size,
            rows=batch_size * 8,
            sequence_length=config.sequence_length,
            tokenizer_folder=tokenizer_folder,
        )
        samples = latency.measure_interleaved(
            runners,
            feeds,
            warmup_runs=config.warmup_runs,
            min_runs=config.min_runs,
            max_runs=config.max_runs,
            time_budget_seconds=config.time_budget_seconds,
            target_ci_half_width=config.target_ci_half_width,
        )
        key = str(batch_size)
        base_metrics["latency_ms"][key] = latency.summarize(samples[0])
        base_metrics.setdefault("throughput_per_s", {})[key] = batch_size * 1000.0 / float(np.median(samples[0]))
        for i, s in enumerate(samples[1:]):
            cand_metrics[i]["latency_ms"][key] = latency.summarize(s)
            cand_metrics[i].setdefault("throughput_per_s", {})[key] = batch_size * 1000.0 / float(np.median(s))
            lo, hi = latency.speedup_ci(samples[0], s)
            ratios[i]["speedup"][key] = {
                "value": float(np.median(samples[0]) / np.median(s)),
                "ci95": [lo, hi],
            }

    out_candidates = []
    for i, cand in enumerate(candidates):
        m = cand_metrics[i]
        r = ratios[i]
        r["size"] = base_metrics["size_bytes"] / max(1, m["size_bytes"])
        r["compressed_size"] = base_metrics["compressed_size_bytes"] / max(1, m["compressed_size_bytes"])
        r["params"] = base_metrics["params"] / max(1, m["params"])
        flags = []
        if any(v["ci95"][1] < 1.0 for v in r["speedup"].values()):
            flags.append("slower_than_baseline")
        min_cos = cand.extra.get("min_cosine")
        cos = m.get("fidelity", {}).get("cosine_mean")
        if min_cos is not None and cos is not None and cos < min_cos:
            flags.append("below_quality_bound")
        out_candidates.append({"id": cand.id, "recipe": cand.recipe, "metrics": m, "ratios": r, "flags": flags})
    providers = getattr(runners[-1], "providers", None)
    return {
        "baseline": base_metrics,
        "candidates": out_candidates,
        "environment": environment(config, providers),
        "config": config.model_dump(),
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
