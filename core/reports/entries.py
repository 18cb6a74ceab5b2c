"""The models of a (normalized) report as the figures and tables walk them: the baseline first,
then each candidate, each with its colour; the quality axis they share; their Pareto front."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.reports.format import get, num
from core.reports.palette import BASELINE_COLOR, CANDIDATE_COLORS


@dataclass
class Entry:
    id: str
    metrics: dict[str, Any]
    color: str
    candidate: dict[str, Any] | None  # None for the baseline

    @property
    def flags(self) -> list[str]:
        return list((self.candidate or {}).get("flags") or [])


def entries(report: dict[str, Any]) -> list[Entry]:
    out = [Entry("baseline", report.get("baseline") or {}, BASELINE_COLOR, None)]
    for i, cand in enumerate(report.get("candidates") or []):
        out.append(Entry(str(cand.get("id", f"candidate {i + 1}")), cand.get("metrics") or {}, CANDIDATE_COLORS[i % len(CANDIDATE_COLORS)], cand))
    return out


def batch_sizes(report: dict[str, Any]) -> list[str]:
    keys: set[str] = set()
    for e in entries(report):
        keys.update(str(k) for k in (e.metrics.get("latency_ms") or {}))
    return sorted(keys, key=lambda k: (int(k) if k.isdigit() else 1 << 30, k))


@dataclass
class QualityAxis:
    label: str
    value: Callable[[Entry], float | None]
    higher_is_better: bool


def quality_axis(report: dict[str, Any]) -> QualityAxis:
    """The task metric when every model has it, else fidelity (cosine to the original's outputs)."""
    models = entries(report)
    primary = get(report, "baseline", "quality", "primary")
    if primary and all(num(get(e.metrics, "quality", primary)) is not None for e in models):
        lower = primary in ("mse", "mae", "rmse", "loss")
        return QualityAxis(
            f"{primary} ({'lower' if lower else 'higher'} is better)",
            lambda e: num(get(e.metrics, "quality", primary)),
            not lower,
        )

    def cosine(e: Entry) -> float | None:
        return 1.0 if e.candidate is None else num(get(e.metrics, "fidelity", "cosine_mean"))

    return QualityAxis("output cosine to the original (higher is better)", cosine, True)


def pareto_front(points: list[tuple[str, float, float]], higher_is_better: bool = True) -> list[str]:
    """Ids of the points no other point beats on both latency (lower) and quality, by latency."""
    sign = 1.0 if higher_is_better else -1.0
    front = []
    for pid, x, y in points:
        dominated = any(
            (qx <= x and sign * qy >= sign * y) and (qx < x or sign * qy > sign * y)
            for qid, qx, qy in points
            if qid != pid
        )
        if not dominated:
            front.append((x, pid))
    return [pid for _, pid in sorted(front)]
