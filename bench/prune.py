"""Pruning benchmark: every pruning method and ratio against the original, measured side by side.

    .venv/bin/python -m bench.prune [--budget 4] [--threads 1] [--skip-minilm]

Each candidate is produced by the real pass (``engine.registry.build_step``), with fine-tuning on
the job-like dataset where the recipe asks for it, then measured with the job's benchmark
(``engine.bench.report.benchmark_models``: params, MACs, dense and deflated size, latency at
batch 1 and 8 interleaved with the original, accuracy or fidelity) in one run.

- digits CNN (ONNX, trained on sklearn's load_digits): accuracy on the 450 test images;
- MiniLM-L6 (HF checkpoint, run as ONNX in onnxruntime after export): fidelity, the mean cosine
  of the output tokens to the original's, on held-out real sentences.

Latency on a shared machine is noisy: read the speedup with its interval, not the p50 alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import materials
from bench.steps import latency_cells, report_rows, run_step
from engine.bench.config import BenchmarkConfig
from engine.bench.report import CandidateInput, benchmark_models
from engine.data import Dataset
from engine.model import ModelFile

CNN_RECIPES: list[tuple[str, dict[str, Any]]] = [
    (
        "structured macs 0.5",
        {"op": "prune", "method": "structured", "macs_ratio": 0.5, "finetune_epochs": 3},
    ),
    (
        "structured macs 0.5 round_to none",
        {
            "op": "prune",
            "method": "structured",
            "macs_ratio": 0.5,
            "round_to": None,
            "finetune_epochs": 3,
        },
    ),
    (
        "structured ratio 0.5",
        {"op": "prune", "method": "structured", "ratio": 0.5, "finetune_epochs": 3},
    ),
    (
        "magnitude 0.9 global gradual",
        {"op": "prune", "method": "magnitude", "sparsity": 0.9, "steps": 5, "finetune_epochs": 3},
    ),
    (
        "magnitude 2:4",
        {"op": "prune", "method": "magnitude", "pattern": "2:4", "finetune_epochs": 1},
    ),
    ("onnx_magnitude 0.5 local", {"op": "prune", "method": "onnx_magnitude", "sparsity": 0.5}),
]
MINILM_RECIPES: list[tuple[str, dict[str, Any]]] = [
    (
        "structured ffn 0.5 heads 1/3",
        {
            "op": "prune",
            "method": "structured",
            "ratio": 0.5,
            "head_ratio": 1 / 3,
            "finetune_epochs": 3,
            "lr": 3e-4,
            "batch_size": 16,
            "max_length": 32,
        },
    ),
    (
        "structured ffn 0.5 heads 1/3 no ft",
        {
            "op": "prune",
            "method": "structured",
            "ratio": 0.5,
            "head_ratio": 1 / 3,
            "finetune_epochs": 0,
        },
    ),
    (
        "magnitude 0.5 global",
        {
            "op": "prune",
            "method": "magnitude",
            "sparsity": 0.5,
            "finetune_epochs": 3,
            "lr": 1e-4,
            "batch_size": 16,
            "max_length": 32,
        },
    ),
]


def run_recipe(
    step: dict[str, Any], model: ModelFile, dataset: Dataset, work: Path
) -> tuple[ModelFile, dict[str, Any]]:
    out, ctx, seconds = run_step(step, model, dataset, work)
    return out, {**ctx.report_sections.get("prune", {}), "seconds": seconds}


def as_onnx(model: ModelFile, dest: Path) -> ModelFile:
    from engine.formats import hf, torch_bridge

    torch_bridge.export_hf_onnx(hf.load_model(model.path), model.path, dest)
    return ModelFile(dest, "onnx", origin="hf")


def table(
    title: str,
    report: dict[str, Any],
    names: list[str],
    pass_reports: list[dict[str, Any]],
    metric: str,
) -> None:
    print(f"\n{title}")
    head = (
        f"{'candidate':<36} {'params':>10} {'nonzero':>10} {'MACs':>12} {'dense kB':>9} {'zip kB':>8} "
        f"{'b1 p50 ms':>9} {'b1 speedup [95% CI]':>22} {'b8 p50 ms':>9} {'b8 speedup [95% CI]':>22} {metric:>9}"
    )
    print(head)
    print("-" * len(head))
    for name, m, ratios in report_rows(report, names):
        cells = [
            f"{name:<36}",
            f"{m['params']:>10,}",
            f"{m['nonzero_params']:>10,}",
            f"{(m.get('macs') or 0):>12,}",
            f"{m['size_bytes'] / 1024:>9.0f}",
            f"{m['compressed_size_bytes'] / 1024:>8.0f}",
            *latency_cells(m, ratios),
        ]
        if metric == "accuracy":
            value = m.get("quality", {}).get("accuracy")
        else:
            value = m.get("fidelity", {}).get("cosine_mean", 1.0 if ratios is None else None)
        cells.append(f"{value:>9.4f}" if value is not None else f"{'-':>9}")
        print(" ".join(cells))
    for name, pr in zip(names, pass_reports, strict=True):
        rounds = pr.get("rounds", [])
        last = rounds[-1] if rounds else {}
        before, after = last.get("metric_before_finetune"), last.get("metric")
        extra = (
            f"validation {pr.get('metric')}, last of {len(rounds)} round(s): "
            f"before fine-tuning {before:.4f}, after {after:.4f}"
            if before is not None
            else ""
        )
        print(f"  {name}: pass took {pr['seconds']:.1f} s{'; ' + extra if extra else ''}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--budget", type=float, default=4.0, help="timing seconds per model and batch size"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads for timing and training"
    )
    parser.add_argument("--skip-minilm", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    config = BenchmarkConfig(
        batch_sizes=[1, 8],
        threads=args.threads,
        time_budget_seconds=args.budget,
        measure_memory=False,
        fidelity_rows=450,
        sequence_length=64,
    )
    work = Path(tempfile.mkdtemp(prefix="shrink-bench-prune-"))
    print(
        f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
        f"{args.threads} thread(s); timing budget {args.budget:.0f} s per model and batch size"
    )

    cnn = ModelFile(materials.digits_cnn_onnx(), "onnx")
    x_train, x_test, y_train, y_test = materials.digits()
    train = Dataset(format="npz", arrays={"image": x_train}, labels=y_train)
    test = Dataset(format="npz", arrays={"image": x_test}, labels=y_test)
    made = [
        run_recipe(step, cnn, train, work / f"cnn{i}") for i, (_, step) in enumerate(CNN_RECIPES)
    ]
    report = benchmark_models(
        cnn,
        [CandidateInput(n, m) for (n, _), (m, _) in zip(CNN_RECIPES, made, strict=True)],
        dataset=test,
        config=config,
    )
    table(
        "digits CNN (onnxruntime), accuracy on 450 test images",
        report,
        [n for n, _ in CNN_RECIPES],
        [r for _, r in made],
        "accuracy",
    )

    if not args.skip_minilm:
        hf_model = ModelFile(materials.minilm_folder(), "hf")
        texts = materials.sentences(400)
        train_texts = Dataset(format="jsonl", texts=texts[:240])
        held_out = Dataset(format="jsonl", texts=texts[240:])
        made = [
            run_recipe(step, hf_model, train_texts, work / f"minilm{i}")
            for i, (_, step) in enumerate(MINILM_RECIPES)
        ]
        config = config.model_copy(update={"fidelity_rows": 160})
        report = benchmark_models(
            as_onnx(hf_model, work / "minilm-original" / "model.onnx"),
            [
                CandidateInput(n, as_onnx(m, work / f"minilm-onnx{i}" / "model.onnx"))
                for i, ((n, _), (m, _)) in enumerate(zip(MINILM_RECIPES, made, strict=True))
            ],
            dataset=held_out,
            config=config,
            tokenizer_folder=hf_model.path,
        )
        table(
            "MiniLM-L6 (exported to ONNX, onnxruntime), 64 tokens; fidelity = token-output cosine on 160 held-out sentences",
            report,
            [n for n, _ in MINILM_RECIPES],
            [r for _, r in made],
            "cosine",
        )
    print(f"\nload average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
