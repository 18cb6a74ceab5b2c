"""Latency against quality: each model at its p50 with the 95% interval, the Pareto front, the best
candidate, the flagged ones, and a legend made of the very marks it explains."""

from __future__ import annotations

import math
from typing import Any

from core.reports.entries import Entry, entries, pareto_front, quality_axis
from core.reports.format import get, num, short
from core.reports.palette import (
    AXIS_COLOR,
    BEST_FILL,
    BEST_STROKE,
    FLAG_COLOR,
    GRID_COLOR,
    MUTED_COLOR,
    PARETO_COLOR,
    SCATTER_TINT,
    TEXT_COLOR,
)
from core.reports.svg import (
    Scale,
    log_ticks,
    nice_ticks,
    padded,
    placed,
    svg_open,
    text,
    tick_labels,
)

# Marks are drawn about (0, 0) and placed with svg.placed, in the plot and in the legend alike.
CROSS = f'<path d="M-4,-4L4,4M-4,4L4,-4" stroke="{FLAG_COLOR}" stroke-width="2"/>'
RING = f'<circle r="11" fill="none" stroke="{PARETO_COLOR}" stroke-width="2"/>'
FRONT_LINE = f'fill="none" stroke="{PARETO_COLOR}" stroke-width="2.5" stroke-dasharray="7 4"'
_STAR_POINTS = " ".join(
    f"{r * math.sin(k * math.pi / 5):.2f},{-r * math.cos(k * math.pi / 5):.2f}" for k, r in ((k, 6.5 if k % 2 == 0 else 2.8) for k in range(10))
)
STAR = f'<polygon points="{_STAR_POINTS}" fill="{BEST_FILL}" stroke="{BEST_STROKE}" stroke-width="1"/>'
STAR_OFFSET = -18  # above the point, clear of the ring (radius 11) and of the label on the right


def dot(e: Entry) -> str:
    """A model's own mark: a dot in its colour; a flagged model's is a hollow ring, crossed out."""
    if e.flags:
        return f'<circle r="7" fill="#ffffff" stroke="{e.color}" stroke-width="3"/>{CROSS}'
    return f'<circle r="7" fill="{e.color}" stroke="#ffffff" stroke-width="1.5"/>'


def _points(report: dict[str, Any], batch_size: str) -> list[tuple[Entry, float, float, float, float]]:
    """(model, p50, quality, interval low, interval high) of every model that has both."""
    axis = quality_axis(report)
    points = []
    for e in entries(report):
        lat = get(e.metrics, "latency_ms", batch_size) or {}
        x, q = num(lat.get("p50")), axis.value(e)
        if x is not None and q is not None:
            ci = lat.get("p50_ci95") or [x, x]
            points.append((e, x, q, num(ci[0]) or x, num(ci[1]) or x))
    return points


def scatter_svg(report: dict[str, Any], batch_size: str) -> str:
    """Latency (p50, with its 95% interval) against quality, with the Pareto front."""
    axis = quality_axis(report)
    models = entries(report)
    points = _points(report, batch_size)
    width, height = 820, 430
    left, right, top, bottom = 78, 190, 34, 56
    parts = [svg_open(width, height, f"latency against quality at batch size {batch_size}")]
    parts.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="{SCATTER_TINT}"/>')
    if not points:
        parts.append(text(width / 2, height / 2, "no model has both a latency and a quality", anchor="middle"))
        return "".join(parts) + "</svg>"
    xs = [p[3] for p in points] + [p[4] for p in points]
    ys = [p[2] for p in points]
    log_x = max(xs) / max(min(xs), 1e-12) > 8
    xlo, xhi = padded(min(xs), max(xs), 0.1, log=log_x)
    if not log_x:
        xlo = max(0.0, xlo)
    ylo, yhi = padded(min(ys), max(ys), 0.15)
    sx = Scale(xlo, xhi, left, width - right, log=log_x)
    sy = Scale(ylo, yhi, height - bottom, top)
    x_ticks = log_ticks(xlo, xhi) if log_x else nice_ticks(xlo, xhi, 6)
    for t, label in zip(x_ticks, tick_labels(x_ticks, log=log_x), strict=True):
        px = sx(t)
        parts.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{height - bottom}" stroke="{GRID_COLOR}"/>')
        parts.append(text(px, height - bottom + 16, label, anchor="middle"))
    y_ticks = nice_ticks(ylo, yhi, 5)
    for t, label in zip(y_ticks, tick_labels(y_ticks), strict=True):
        py = sy(t)
        parts.append(f'<line x1="{left}" y1="{py:.1f}" x2="{width - right}" y2="{py:.1f}" stroke="{GRID_COLOR}"/>')
        parts.append(text(left - 6, py + 4, label, anchor="end"))
    parts.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="{AXIS_COLOR}"/>')
    parts.append(text((left + width - right) / 2, height - 14, f"p50 latency at batch size {batch_size} (ms{', log scale' if log_x else ''}); bars: 95% interval", anchor="middle"))
    mid_y = (top + height - bottom) / 2
    parts.append(text(16, mid_y, axis.label, anchor="middle", extra=f' transform="rotate(-90 16 {mid_y:.1f})"'))
    better_y = top + 14 if axis.higher_is_better else height - bottom - 8
    parts.append(text(left + 8, better_y, "← better", color=MUTED_COLOR, size=10))

    front = pareto_front([(p[0].id, p[1], p[2]) for p in points], axis.higher_is_better)
    by_id = {p[0].id: p for p in points}
    if front:
        path = []
        for i, pid in enumerate(front):
            _, x, y, _, _ = by_id[pid]
            path.append(f"M{sx(x):.1f},{sy(y):.1f}" if i == 0 else f"H{sx(x):.1f}V{sy(y):.1f}")
        parts.append(f'<path d="{" ".join(path)}" {FRONT_LINE}/>')
    best = next((p[0].id for p in points if p[0].candidate is not None and p[0].id == report.get("best_candidate_id")), None)
    for e, x, y, lo, hi in points:
        px, py = sx(x), sy(y)
        parts.append(f'<line x1="{sx(lo):.1f}" y1="{py:.1f}" x2="{sx(hi):.1f}" y2="{py:.1f}" stroke="{e.color}" stroke-width="2"/>')
        for end in (lo, hi):
            parts.append(f'<line x1="{sx(end):.1f}" y1="{py - 5:.1f}" x2="{sx(end):.1f}" y2="{py + 5:.1f}" stroke="{e.color}" stroke-width="2"/>')
        if e.id in front:
            parts.append(placed(RING, px, py, name="Pareto front"))
        parts.append(placed(dot(e), px, py, name=e.id))
        if e.id == best:
            parts.append(placed(STAR, px, py + STAR_OFFSET, name="best"))
        parts.append(text(px + 13, py - 9, short(e.id, 22), size=11, color=TEXT_COLOR))
    parts.append(_legend(width - right + 16, top + 12, models, points, front, best))
    return "".join(parts) + "</svg>"


def _legend(lx: float, ly: float, models: list[Entry], points: list[Any], front: list[str], best: str | None) -> str:
    """Right of the plot: one entry per kind of mark the plot holds, each the plot's own markup."""
    plotted = {p[0].id for p in points}
    parts = ['<g class="legend">']

    def entry(mark: str, label: str, name: str, step: float = 22) -> None:
        nonlocal ly
        parts.append(placed(mark, lx + 13, ly, name=name))
        parts.append(text(lx + 34, ly + 4, label))
        ly += step

    if front:
        entry(f'<path d="M-16,0h32" {FRONT_LINE}/>{RING}', "Pareto front", "Pareto front", 28)
    if best is not None:
        entry(STAR, "best candidate", "best")
    if any(e.flags for e in models if e.id in plotted):
        entry(CROSS, "flagged", "flagged")
    for e in models[:12]:
        entry(dot(e), short(e.id, 20), e.id)
    parts.append("</g>")
    return "".join(parts)
