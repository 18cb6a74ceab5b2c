"""What the benchmark scripts share: one recipe step run as a job runs it (checked, then run,
timed), and the rows and latency cells of their tables."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.context import PassContext
from engine.data import Dataset
from engine.model import ModelFile
from engine.registry import build_step


def run_step(step: dict[str, Any], model: ModelFile, dataset: Dataset | None, work: Path) -> tuple[ModelFile, PassContext, float]:
    """The step's output, its context (``resolved``, ``report_sections``) and the seconds it took."""
    work.mkdir(parents=True, exist_ok=True)
    ctx = PassContext(work_dir=work, original=model, dataset=dataset)
    configured = build_step(step)
    configured.check(model, ctx)
    started = time.perf_counter()
    out = configured.run(model, ctx)
    return out, ctx, time.perf_counter() - started


def report_rows(report: dict[str, Any], names: list[str]) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(name, metrics, ratios) for the baseline (ratios None) and each candidate of a job report."""
    return [("original", report["baseline"], None)] + [
        (n, c["metrics"], c["ratios"]) for n, c in zip(names, report["candidates"], strict=True)
    ]


def latency_cells(metrics: dict[str, Any], ratios: dict[str, Any] | None, batch_sizes: tuple[str, ...] = ("1", "8")) -> list[str]:
    """p50 and speedup with its 95% interval at each batch size, in the tables' column widths."""
    cells = []
    for bs in batch_sizes:
        cells.append(f"{metrics['latency_ms'][bs]['p50']:>9.3f}")
        if ratios is None:
            cells.append(f"{'1.00':>22}")
        else:
            s = ratios["speedup"][bs]
            cells.append(f"{s['value']:>5.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]".rjust(22))
    return cells
