"""Latency against quality: each model at its p50 with the 95% interval, and the Pareto front."""

from __future__ import annotations

from typing import Any

from core.reports.entries import entries, pareto_front, quality_axis
from core.reports.format import get, num, short
from core.reports.palette import AXIS_COLOR, GRID_COLOR, PARETO_COLOR, SCATTER_TINT, TEXT_COLOR
from core.reports.svg import Scale, log_ticks, nice_ticks, padded, svg_open, text, tick_label


def scatter_svg(report: dict[str, Any], batch_size: str) -> str:
    """Latency (p50, with its 95% interval) against quality, with the Pareto front."""
    axis = quality_axis(report)
    models = entries(report)
    points = []
    for e in models:
        lat = get(e.metrics, "latency_ms", batch_size) or {}
        x, q = num(lat.get("p50")), axis.value(e)
        if x is not None and q is not None:
            ci = lat.get("p50_ci95") or [x, x]
            points.append((e, x, q, num(ci[0]) or x, num(ci[1]) or x))
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
    for t in log_ticks(xlo, xhi) if log_x else nice_ticks(xlo, xhi, 6):
        px = sx(t)
        parts.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{height - bottom}" stroke="{GRID_COLOR}"/>')
        parts.append(text(px, height - bottom + 16, tick_label(t), anchor="middle"))
    for t in nice_ticks(ylo, yhi, 5):
        py = sy(t)
        parts.append(f'<line x1="{left}" y1="{py:.1f}" x2="{width - right}" y2="{py:.1f}" stroke="{GRID_COLOR}"/>')
        parts.append(text(left - 6, py + 4, tick_label(t), anchor="end"))
    parts.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="{AXIS_COLOR}"/>')
    parts.append(text((left + width - right) / 2, height - 14, f"p50 latency at batch size {batch_size} (ms{', log scale' if log_x else ''}); bars: 95% interval", anchor="middle"))
    parts.append(text(16, (top + height - bottom) / 2, axis.label, anchor="middle", extra=f' transform="rotate(-90 16 {(top + height - bottom) / 2:.1f})"'))
    better_y = top + 14 if axis.higher_is_better else height - bottom - 8
    parts.append(text(left + 8, better_y, "← better", color="#6b7280", size=10))

    front = pareto_front([(p[0].id, p[1], p[2]) for p in points], axis.higher_is_better)
    by_id = {p[0].id: p for p in points}
    if len(front) >= 1:
        path = []
        for i, pid in enumerate(front):
            _, x, y, _, _ = by_id[pid]
            if i == 0:
                path.append(f"M{sx(x):.1f},{sy(y):.1f}")
            else:
                path.append(f"H{sx(x):.1f}V{sy(y):.1f}")
        parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{PARETO_COLOR}" stroke-width="2.5" stroke-dasharray="7 4"/>')
    for e, x, y, lo, hi in points:
        px, py = sx(x), sy(y)
        parts.append(f'<line x1="{sx(lo):.1f}" y1="{py:.1f}" x2="{sx(hi):.1f}" y2="{py:.1f}" stroke="{e.color}" stroke-width="2"/>')
        for end in (lo, hi):
            parts.append(f'<line x1="{sx(end):.1f}" y1="{py - 5:.1f}" x2="{sx(end):.1f}" y2="{py + 5:.1f}" stroke="{e.color}" stroke-width="2"/>')
        if e.id in front:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="11" fill="none" stroke="{PARETO_COLOR}" stroke-width="2"/>')
        if e.flags:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="7" fill="#ffffff" stroke="{e.color}" stroke-width="3"/>')
            parts.append(f'<path d="M{px - 4:.1f},{py - 4:.1f}L{px + 4:.1f},{py + 4:.1f}M{px - 4:.1f},{py + 4:.1f}L{px + 4:.1f},{py - 4:.1f}" stroke="{PARETO_COLOR}" stroke-width="2"/>')
        else:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="7" fill="{e.color}" stroke="#ffffff" stroke-width="1.5"/>')
        parts.append(text(px + 13, py - 9, short(e.id, 22), size=11, color=TEXT_COLOR))
    # Legend, right of the plot.
    lx, ly = width - right + 16, top + 8
    parts.append(f'<path d="M{lx},{ly} h26" stroke="{PARETO_COLOR}" stroke-width="2.5" stroke-dasharray="7 4"/>')
    parts.append(text(lx + 32, ly + 4, "Pareto front"))
    ly += 20
    parts.append(f'<circle cx="{lx + 13}" cy="{ly}" r="6" fill="#ffffff" stroke="{TEXT_COLOR}" stroke-width="2.5"/>')
    parts.append(text(lx + 32, ly + 4, "flagged"))
    for e in models[:12]:
        ly += 20
        parts.append(f'<circle cx="{lx + 13}" cy="{ly}" r="6" fill="{e.color}"/>')
        parts.append(text(lx + 32, ly + 4, short(e.id, 20)))
    return "".join(parts) + "</svg>"
