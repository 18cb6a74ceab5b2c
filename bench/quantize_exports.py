"""The default quantization on MiniLM-L6 as each common exporter writes it, in one run.

    .venv/bin/python -m bench.quantize_exports [--sentences 400] [--budget 40] [--threads 0]
                                               [--optimum-onnx PATH]

Exports: eager attention through torch's TorchScript exporter (Shrink's own export), transformers'
default SDPA attention through it (``torch.onnx.export(dynamo=False)``), SDPA through the dynamo
exporter (``dynamo=True``), and, given ``--optimum-onnx``, the ``model.onnx`` that
``optimum-cli export onnx --model <MiniLM folder> --task feature-extraction`` wrote (Optimum
is not a dependency: export it in its own environment). Each export is quantized with
``{"op": "quantize"}`` as the engine runs it; the table gives, per export, the int8 model's
speedup over that same export's fp32 at batch 1 and 8 (median of interleaved rounds, every
model of the run timed together by ``measure_interleaved``), the mean/min cosine of the
mean-pooled sentence embeddings to that export's fp32 on real sentences (sequence length 64),
and which graph rewrites applied (``resolved["rewrites"]``) with the Attention count.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import materials
from bench.quantize_minilm import median_latencies
from engine import hardware
from engine.bench.runners import OnnxRunner
from engine.context import PassContext
from engine.model import ModelFile
from engine.registry import build_step


def _rewrites(resolved: dict) -> str:
    """"sdpa_attention 6, attention_fusion (Attention 6)" or the reasons rewrites did not apply."""
    parts = []
    for name, what in resolved.get("rewrites", {}).items():
        if what.get("applied"):
            detail = what.get("attention_blocks") or what.get("biases") or ", ".join(
                f"{op} {n}" for op, n in what.get("fused", {}).items() if op == "Attention"
            )
            parts.append(f"{name} ({detail})")
        else:
            parts.append(f"no {name}: {what.get('reason')}")
    return "; ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("--budget", type=float, default=40.0, help="seconds of timing per batch size, all models")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the runtime's default)")
    parser.add_argument("--optimum-onnx", type=Path, help="MiniLM-L6's model.onnx as optimum-cli export onnx wrote it")
    args = parser.parse_args()

    exports = {
        "eager, TorchScript exporter": materials.minilm_onnx("eager"),
        "sdpa, TorchScript exporter": materials.minilm_onnx("sdpa"),
        "sdpa, dynamo exporter": materials.minilm_onnx("sdpa", dynamo=True),
    }
    if args.optimum_onnx:
        exports["optimum-cli export onnx"] = args.optimum_onnx
    feeds = materials.sentence_feeds(args.sentences, 64)
    folder = Path(tempfile.mkdtemp(prefix="shrink-quantize-exports-"))

    fp32: list[ModelFile] = []
    int8: list[ModelFile] = []
    notes: list[str] = []
    for i, (name, path) in enumerate(exports.items()):
        source = ModelFile(path, "onnx")
        ctx = PassContext(work_dir=folder / str(i), original=source)
        ctx.work_dir.mkdir(parents=True)
        started = time.perf_counter()
        int8.append(build_step({"op": "quantize"}).run(source, ctx))
        fp32.append(source)
        notes.append(f"{_rewrites(ctx.resolved)}; built in {time.perf_counter() - started:.0f}s")
        print(f"built {name}: {notes[-1]}", file=sys.stderr, flush=True)

    runners = [OnnxRunner(m, threads=args.threads) for m in [*fp32, *int8]]
    embeddings = [materials.sentence_embeddings(r.session, feeds) for r in runners]
    n = len(exports)
    latency = median_latencies(runners, feeds, args.budget)

    cpu = hardware.cpu_info()
    print(f"\nMiniLM-L6, the default {{op: quantize}} on each export, {args.sentences} real sentences, seq 64; {cpu['cpu']}, "
          f"{os.cpu_count()} cores, flags {' '.join(cpu['cpu_flags'])}, threads={args.threads or 'default'}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print("| export | fp32 b1 ms | int8 b1 ms | b1 speedup | fp32 b8 ms | int8 b8 ms | b8 speedup | cos mean | cos min | rewrites |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i, name in enumerate(exports):
        cos = materials.cosines(embeddings[i], embeddings[n + i])
        b1, b8 = (latency[1][i], latency[1][n + i]), (latency[8][i], latency[8][n + i])
        print(
            f"| {name} | {b1[0]:.1f} | {b1[1]:.1f} | {b1[0] / b1[1]:.2f}x | {b8[0]:.1f} | {b8[1]:.1f} | {b8[0] / b8[1]:.2f}x "
            f"| {cos.mean():.4f} | {cos.min():.4f} | {notes[i]} |"
        )
    fp32_cos = [materials.cosines(embeddings[0], embeddings[i]) for i in range(1, n)]
    print("\nfp32 exports against the eager one (same function): cos min " + ", ".join(f"{c.min():.6f}" for c in fp32_cos))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
