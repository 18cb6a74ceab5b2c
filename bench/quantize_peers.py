"""Shrink's default int8 against other libraries' default int8, on MiniLM-L6 (ONNX), in one run.

    make bench-peers          # builds .venv-peers, then runs this with the defaults
    .venv/bin/python -m bench.quantize_peers [--sentences 400] [--budget 40] [--threads 0]

The same fp32 ONNX (``bench.materials.minilm_onnx()``) is quantized by:

- onnxruntime ``quantize_dynamic``, per-channel, ``reduce_range`` (7-bit weights);
- Optimum's ``ORTQuantizer`` with ``AutoQuantizationConfig.avx2(is_static=False)`` and
  ``.avx512_vnni(is_static=False)``;
- Intel Neural Compressor (onnx-neural-compressor): ``DynamicQuantConfig()`` and
  ``StaticQuantConfig(reader)`` as they come;
- NNCF: ``nncf.quantize(..., model_type=nncf.ModelType.TRANSFORMER)``;
- Shrink: ``{"op": "quantize"}``, as the engine runs it.

Each peer runs in its own process in ``.venv-peers`` (``bench.peer_quantizers``; the peers'
packages never enter the service's venv); onnxruntime's own recipe runs under this Python. The
calibrated recipes see ``--calibration-rows`` sentences that are not among the evaluated ones.
Every model is then timed here, with the service's onnxruntime, interleaved (``measure_interleaved``
at batch 1 and 8, seq 64); speedups are over fp32, cosines are those of the mean-pooled sentence
embeddings to fp32's on ``--sentences`` real sentences. A recipe that cannot be built or run
gets a row that says why, and the run goes on.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
COSINE_BAR = 0.995
DEFAULT = "Shrink default {op: quantize}"
# Table name -> bench.peer_quantizers PEER. (cal*): calibrated on other sentences.
PEERS = {
    "onnxruntime quantize_dynamic, per-channel, reduce_range": "ort",
    "Optimum avx2(is_static=False)": "optimum-avx2",
    "Optimum avx512_vnni(is_static=False)": "optimum-avx512-vnni",
    "INC DynamicQuantConfig()": "inc-dynamic",
    "INC StaticQuantConfig() (cal*)": "inc-static",
    "NNCF ModelType.TRANSFORMER (cal*)": "nncf",
}
PEER_PACKAGES = ("onnxruntime", "optimum", "optimum-onnx", "onnx-neural-compressor", "nncf", "torch", "numpy")


@dataclass
class Row:
    name: str
    b1: float | None = None  # speedup over fp32
    b8: float | None = None
    cos_mean: float | None = None
    cos_min: float | None = None
    size_mb: float | None = None
    failed: str | None = None  # one line: why there are no figures


def one_line(text: str, limit: int = 160) -> str:
    """The last meaningful line of a traceback or log, fit for one table cell."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else "no message"
    line = line.replace("|", "/")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def table(rows: list[Row]) -> list[str]:
    out = ["| recipe | b1 speedup | b8 speedup | cos mean | cos min | size MB |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.failed is not None:
            out.append(f"| {r.name} | failed: {r.failed} | - | - | - | - |")
        else:
            out.append(
                f"| {r.name} | {r.b1:.2f}x | {r.b8:.2f}x | {r.cos_mean:.4f} | {r.cos_min:.4f} | {r.size_mb:.1f} |"
            )
    return out


def fastest(rows: list[Row], bar: float = COSINE_BAR) -> Row | None:
    """The fastest measured recipe (geometric mean of the b1 and b8 speedups) whose mean cosine
    is at least ``bar``; None when none is."""
    eligible = [r for r in rows if r.failed is None and r.cos_mean is not None and r.cos_mean >= bar]
    return max(eligible, key=lambda r: (r.b1 * r.b8) ** 0.5, default=None)


def verdict(rows: list[Row], default: str = DEFAULT, bar: float = COSINE_BAR) -> str:
    best = fastest(rows, bar)
    if best is None:
        return f"No recipe reached mean cosine >= {bar}."
    head = (
        f"Fastest at mean cosine >= {bar} (geometric mean of b1 and b8 speedups): {best.name} "
        f"({best.b1:.2f}x at b1, {best.b8:.2f}x at b8, cosine {best.cos_mean:.4f})"
    )
    if best.name == default:
        return head + ": Shrink's default."
    mine = next((r for r in rows if r.name == default), None)
    if mine is None or mine.failed is not None:
        return head + ": not Shrink's default, which produced no figures here."
    return head + (
        f": not Shrink's default ({mine.b1:.2f}x at b1, {mine.b8:.2f}x at b8, cosine {mine.cos_mean:.4f}"
        f"{'' if mine.cos_mean >= bar else f', below {bar}'})."
    )


def run_peer(peer: str, src: Path, dest: Path, calibration: Path, timeout: float) -> str | None:
    """Build one peer's model in a subprocess; None when DEST was written, else why not."""
    python = Path(sys.executable) if peer == "ort" else PEERS_PYTHON
    if not python.is_file():
        return "the peers' venv .venv-peers is not installed (make bench-peers builds it)"
    cmd = [str(python), "-m", "bench.peer_quantizers", peer, str(src), str(dest), "--calibration", str(calibration)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"no model after {timeout:.0f} s"
    if done.returncode != 0 or not dest.is_file():
        return one_line(done.stderr or done.stdout or f"exit status {done.returncode}")
    return None


def peer_versions() -> str:
    if not PEERS_PYTHON.is_file():
        return "not installed"
    code = (
        "from importlib.metadata import version, PackageNotFoundError\n"
        f"for p in {PEER_PACKAGES!r}:\n"
        "    try: print(f'{p} {version(p)}')\n"
        "    except PackageNotFoundError: pass\n"
    )
    done = subprocess.run([str(PEERS_PYTHON), "-c", code], capture_output=True, text=True, timeout=120)
    return ", ".join(done.stdout.split("\n")).strip(", ") or one_line(done.stderr)


def calibration_feeds(evaluated: list[str], rows: int, seq_len: int) -> dict[str, np.ndarray]:
    """Token arrays of ``rows`` real sentences that are none of ``evaluated``."""
    from bench import materials
    from engine.formats import hf

    seen = set(evaluated)
    texts = [t for t in materials.sentences(len(evaluated) + 4 * rows, seed=1) if t not in seen][:rows]
    tokenizer = hf.load_tokenizer(materials.minilm_folder())
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def main() -> int:
    from bench import materials
    from bench.quantize_minilm import median_latencies
    from engine import hardware
    from engine.bench.runners import OnnxRunner
    from engine.context import PassContext
    from engine.model import ModelFile
    from engine.registry import build_step

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=400, help="evaluated sentences")
    parser.add_argument("--calibration-rows", type=int, default=128, help="other sentences, for the calibrated recipes")
    parser.add_argument("--budget", type=float, default=40.0, help="seconds of timing per batch size, all models")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the runtime's default)")
    parser.add_argument("--peer-timeout", type=float, default=1800.0, help="seconds one peer may take to quantize")
    parser.add_argument("--only", nargs="*", help="peer recipes (substrings of their names) to run")
    args = parser.parse_args()

    baseline = ModelFile(materials.minilm_onnx(), "onnx")
    feeds = materials.sentence_feeds(args.sentences, 64)
    folder = Path(tempfile.mkdtemp(prefix="shrink-quantize-peers-"))
    calibration = folder / "calibration.npz"
    np.savez(calibration, **calibration_feeds(materials.sentences(args.sentences), args.calibration_rows, 64))

    models: dict[str, ModelFile] = {"fp32": baseline}
    failed: dict[str, str] = {}
    for name, peer in PEERS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        started = time.perf_counter()
        dest = folder / f"{peer}.onnx"
        reason = run_peer(peer, baseline.path, dest, calibration, args.peer_timeout)
        if reason is None:
            models[name] = ModelFile(dest, "onnx")
        else:
            failed[name] = reason
        print(f"{name}: {reason or 'built'} ({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)
    started = time.perf_counter()
    ctx = PassContext(work_dir=folder / "shrink", original=baseline)
    ctx.work_dir.mkdir()
    try:
        models[DEFAULT] = build_step({"op": "quantize"}).run(baseline, ctx)
    except Exception as exc:  # the table says why, the peers' rows still come
        failed[DEFAULT] = one_line(f"{type(exc).__name__}: {exc}")
    print(f"{DEFAULT}: {failed.get(DEFAULT, 'built')} ({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)

    runners: dict[str, OnnxRunner] = {}
    cos: dict[str, np.ndarray] = {}
    reference = None
    for name, model in models.items():
        try:
            runner = OnnxRunner(model, threads=args.threads)
            embeddings = materials.sentence_embeddings(runner.session, feeds)
        except Exception as exc:  # built, but the service's onnxruntime cannot run it
            failed[name] = one_line(f"onnxruntime cannot run it: {type(exc).__name__}: {exc}")
            continue
        reference = embeddings if reference is None else reference
        runners[name] = runner
        cos[name] = materials.cosines(reference, embeddings)

    names = list(runners)
    latency = median_latencies(list(runners.values()), feeds, args.budget)

    rows = []
    for name in [n for n in [*PEERS, DEFAULT] if n in models or n in failed]:
        if name in failed:
            rows.append(Row(name, failed=failed[name]))
            continue
        i = names.index(name)
        rows.append(Row(
            name, b1=latency[1][0] / latency[1][i], b8=latency[8][0] / latency[8][i],
            cos_mean=float(cos[name].mean()), cos_min=float(cos[name].min()),
            size_mb=models[name].path.stat().st_size / 1e6,
        ))  # fmt: skip

    info = hardware.cpu_info()
    import onnxruntime

    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; CPU: {info['cpu']}, {os.cpu_count()} cores; flags: {' '.join(info['cpu_flags'])}")
    print(
        f"MiniLM-L6 ONNX (fp32 {baseline.path.stat().st_size / 1e6:.1f} MB, b1 {latency[1][0]:.1f} ms, b8 {latency[8][0]:.1f} ms), "
        f"{args.sentences} real sentences, seq 64; timed with onnxruntime {onnxruntime.__version__}, "
        f"threads={args.threads or 'default'}, budget {args.budget:.0f} s per batch size"
    )
    print(f"peers' venv: {peer_versions()}\n")
    print("\n".join(table(rows)))
    print(f"\n(cal*): calibrated on {args.calibration_rows} other sentences (none of the evaluated ones).")
    print(verdict(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
