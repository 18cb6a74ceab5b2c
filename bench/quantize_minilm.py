"""Every quantization method on MiniLM-L6 (ONNX), against fp32, in one run.

    .venv/bin/python -m bench.quantize_minilm [--sentences 400] [--budget 40] [--threads 0]

For fp32 (Shrink's eager-attention export; transformers' SDPA export beside it, fused by the
default too since engine/quantization/sdpa_rewrite.py) and each
method: file size, latency at batch 1 and 8 (median of interleaved rounds,
timed by the job benchmark's ``measure_interleaved`` on the same batches), speedup over fp32,
and the mean/min cosine of the mean-pooled sentence embeddings to fp32's on real English
sentences (``bench.materials.sentences``), sequence length 64.

Each method runs as the engine runs it (``build_step`` + ``PassContext``). ``static`` and
``mixed`` get the sentences as their dataset (an .npz-like Dataset of token arrays): static
calibrates on the first 128 rows, mixed measures sensitivity on 32; the cosine columns are
computed on all rows, so those two have seen part of the evaluation data (noted in the table).
(skipln*) is the default built without the residual-sum rewrite, to show what it is worth.
QAT (train*) starts from the Hugging Face checkpoint and fine-tunes toward the float model's
outputs on 400 other sentences (none of the evaluation rows), then is delivered as ONNX int8.
The other methods see no data (generated inputs where they need any).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from bench import materials
from engine.bench.latency import measure_interleaved
from engine.bench.runners import OnnxRunner
from engine.context import PassContext
from engine.data import Dataset
from engine.model import ModelFile
from engine.quantization import residual_sum
from engine.registry import build_step

METHODS: dict[str, dict] = {
    "dynamic per-tensor (ORT defaults)": {"op": "quantize", "method": "dynamic", "per_channel": False, "preprocess": False},
    "dynamic per-channel": {"op": "quantize", "method": "dynamic"},
    "static QDQ minmax (data*)": {"op": "quantize", "method": "static", "calibration_samples": 128},
    "mixed, target 0.995 (data*)": {"op": "quantize", "method": "mixed", "target_cosine": 0.995},
    "fp16": {"op": "quantize", "method": "fp16"},
    "int4 MatMulNBits": {"op": "quantize", "method": "int4"},
    "codebook 8-bit": {"op": "quantize", "method": "codebook", "bits": 8},
    "codebook 4-bit": {"op": "quantize", "method": "codebook", "bits": 4},
    "torchao int8 dynamic": {"op": "quantize", "method": "torchao", "scheme": "int8_dynamic"},
    "torchao int8 weight-only": {"op": "quantize", "method": "torchao", "scheme": "int8_weight_only"},
    "torchao int4 weight-only": {"op": "quantize", "method": "torchao", "scheme": "int4_weight_only"},
    "QAT int8, 3 epochs (train*)": {"op": "quantize", "method": "qat", "epochs": 3, "batch_size": 16, "lr": 5e-5, "dropout": False},
    "DEFAULT {op: quantize}": {"op": "quantize"},
    "DEFAULT, without attention fusion": {"op": "quantize", "fuse_attention": False},
    "DEFAULT, residuals as SkipLayerNormalization (skipln*)": {"op": "quantize"},
    "DEFAULT on the SDPA export (sdpa*)": {"op": "quantize"},
}


def timing_batches(feeds: dict[str, np.ndarray], batch: int) -> list[dict[str, np.ndarray]]:
    """Up to 8 full batches of ``feeds``: an empty one (past the last sentence, with fewer than
    64 of them) crashes onnxruntime's int8 attention with a floating point exception."""
    count = max(1, min(8, len(feeds["input_ids"]) // batch))
    return [{k: v[s : s + batch] for k, v in feeds.items()} for s in range(0, count * batch, batch)]


def median_latencies(runners: list[OnnxRunner], feeds: dict[str, np.ndarray], budget: float) -> dict[int, list[float]]:
    """Each runner's median latency at batch 1 and 8, ms, all timed together in interleaved
    rounds (the job benchmark's ``measure_interleaved``) on the same batches."""
    latency: dict[int, list[float]] = {}
    for batch in (1, 8):
        timing = measure_interleaved(
            runners, timing_batches(feeds, batch), warmup_runs=3, min_runs=15, max_runs=400,
            time_budget_seconds=budget, target_ci_half_width=0.02,
        )  # fmt: skip
        latency[batch] = [float(np.median(s)) for s in timing.samples]
        print(f"batch {batch}: {len(timing.samples[0])} rounds", file=sys.stderr, flush=True)
    return latency


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("--budget", type=float, default=40.0, help="seconds of timing per batch size, all models")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the runtime's default)")
    parser.add_argument("--only", nargs="*", help="method names (substrings) to run")
    args = parser.parse_args()

    baseline = ModelFile(materials.minilm_onnx(), "onnx")
    feeds = materials.sentence_feeds(args.sentences, 64)
    dataset = Dataset("npz", arrays=feeds)
    folder = Path(tempfile.mkdtemp(prefix="shrink-quantize-bench-"))

    checkpoint = ModelFile(materials.minilm_folder(), "hf")
    evaluated = set(materials.sentences(args.sentences))
    training = Dataset("jsonl", texts=[t for t in materials.sentences(args.sentences + 1000, seed=1) if t not in evaluated][:400])

    # transformers' default attention (SDPA) exports a graph onnxruntime's optimizer does not
    # match; engine/quantization/sdpa_rewrite.py fuses it. The same function, timed beside Shrink's
    # eager export (bench/quantize_exports.py compares every export kind, each against its own fp32).
    sdpa = ModelFile(materials.minilm_onnx(attention="sdpa"), "onnx")
    models: dict[str, ModelFile] = {"fp32": baseline, "fp32, SDPA export (sdpa*)": sdpa}
    notes: dict[str, str] = {}
    for name, step in METHODS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        source, data = (checkpoint, training) if "train*" in name else (baseline, dataset if "data*" in name else None)
        source = sdpa if "sdpa*" in name else source
        ctx = PassContext(work_dir=folder / str(len(models)), original=source, dataset=data)
        ctx.work_dir.mkdir(parents=True)
        started = time.perf_counter()
        # (skipln*): the default as it was before engine/quantization/residual_sum.py, to time what the
        # rewrite is worth in the same run.
        with mock.patch.object(residual_sum, "rewrite", return_value=0) if "skipln*" in name else contextlib.nullcontext():
            models[name] = build_step(step).run(source, ctx)
        notes[name] = f"{time.perf_counter() - started:.0f}s"
        if "kept_float" in ctx.resolved:
            notes[name] += f", {len(ctx.resolved['kept_float'])} layers float"
        print(f"built {name} in {notes[name]}", file=sys.stderr, flush=True)

    runners = [OnnxRunner(m, threads=args.threads) for m in models.values()]
    reference = materials.sentence_embeddings(runners[0].session, feeds)
    cos = {name: materials.cosines(reference, materials.sentence_embeddings(r.session, feeds)) for name, r in zip(models, runners, strict=True)}

    latency = median_latencies(runners, feeds, args.budget)

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    print(f"\nMiniLM-L6 ONNX, {args.sentences} real sentences, seq 64; {cpu}, {os.cpu_count()} cores, threads={args.threads or 'default'}")
    print("| method | size MB | ratio | b1 ms | b1 speedup | b8 ms | b8 speedup | cos mean | cos min | build |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base_size = baseline.path.stat().st_size
    for i, (name, model) in enumerate(models.items()):
        size = model.path.stat().st_size
        print(
            f"| {name} | {size / 1e6:.1f} | {base_size / size:.2f}x "
            f"| {latency[1][i]:.1f} | {latency[1][0] / latency[1][i]:.2f}x "
            f"| {latency[8][i]:.1f} | {latency[8][0] / latency[8][i]:.2f}x "
            f"| {cos[name].mean():.4f} | {cos[name].min():.4f} | {notes.get(name, '')} |"
        )
    print("\n(data*): calibrated / sensitivity-measured on rows of the same sentences; (train*): trained on other sentences;")
    print("(sdpa*): transformers' default SDPA export (same function; speedups are against the eager export's fp32).")
    print("(skipln*): the default without the residual-sum rewrite (onnxruntime's SkipLayerNormalization kernels).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
