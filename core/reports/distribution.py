"""The latency distribution of every model at one batch size."""

from __future__ import annotations

from typing import Any

from core.reports.entries import entries
from core.reports.format import fmt_ms, get, num, short
from core.reports.palette import DISTRIBUTION_TINT, GRID_COLOR, PARETO_COLOR, TEXT_COLOR
from core.reports.svg import Scale, log_ticks, padded, svg_open, text, tick_label


def distribution_svg(report: dict[str, Any], batch_size: str) -> str:
    """Per model, a lane: the histogram of its runs (log time axis), the interquartile box, the
    p5-p95 whiskers, the median with its 95% interval, and p99."""
    models = [e for e in entries(report) if get(e.metrics, "latency_ms", batch_size)]
    lane, width = 58, 1100
    left, right, top, bottom = 170, 30, 20, 46
    height = top + bottom + lane * max(1, len(models))
    parts = [svg_open(width, height, f"latency distributions at batch size {batch_size}")]
    parts.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{lane * max(1, len(models))}" fill="{DISTRIBUTION_TINT}"/>')
    values: list[float] = []
    for e in models:
        lat = e.metrics["latency_ms"][batch_size]
        q = lat.get("quantiles") or {}
        values += [v for v in (num(q.get("p1")), num(q.get("p5")), num(lat.get("p50")), num(lat.get("p99")), num(q.get("p95"))) if v]
        edges = get(lat, "histogram", "edges") or []
        values += [v for v in (num(edges[0]) if edges else None, num(edges[-1]) if edges else None) if v]
    if not values:
        return "".join(parts) + "</svg>"
    lo, hi = padded(min(values), max(values), 0.04, log=True)
    sx = Scale(lo, hi, left, width - right, log=True)
    for t in log_ticks(lo, hi):
        px = sx(t)
        parts.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{height - bottom}" stroke="{GRID_COLOR}"/>')
        parts.append(text(px, height - bottom + 16, tick_label(t), anchor="middle"))
    parts.append(text((left + width - right) / 2, height - 10, f"latency at batch size {batch_size} (ms, log scale)", anchor="middle"))
    for i, e in enumerate(models):
        lat = e.metrics["latency_ms"][batch_size]
        y0 = top + i * lane
        mid = y0 + lane * 0.62
        parts.append(text(left - 10, mid + 4, short(e.id, 24), anchor="end", color=PARETO_COLOR if e.flags else TEXT_COLOR))
        hist = lat.get("histogram") or {}
        edges, counts = hist.get("edges") or [], hist.get("counts") or []
        if len(edges) == len(counts) + 1 and counts and max(counts) > 0:
            peak = max(counts)
            d = [f"M{sx(edges[0]):.1f},{mid:.1f}"]
            for j, c in enumerate(counts):
                h = (lane * 0.5) * c / peak
                d.append(f"V{mid - h:.1f}H{sx(edges[j + 1]):.1f}")
            d.append(f"V{mid:.1f}Z")
            parts.append(f'<path d="{"".join(d)}" fill="{e.color}" fill-opacity="0.35" stroke="{e.color}" stroke-width="1"/>')
        q = lat.get("quantiles") or {}
        p5, p25, p75, p95 = (num(q.get(k)) for k in ("p5", "p25", "p75", "p95"))
        p50, p99 = num(lat.get("p50")), num(lat.get("p99"))
        box_y = mid + 4
        if p5 and p95:
            parts.append(f'<line x1="{sx(p5):.1f}" y1="{box_y + 6:.1f}" x2="{sx(p95):.1f}" y2="{box_y + 6:.1f}" stroke="{e.color}" stroke-width="1.5"/>')
        if p25 and p75:
            parts.append(f'<rect x="{sx(p25):.1f}" y="{box_y:.1f}" width="{max(1.5, sx(p75) - sx(p25)):.1f}" height="12" fill="{e.color}" fill-opacity="0.8"/>')
        ci = lat.get("p50_ci95") or []
        if len(ci) == 2 and num(ci[0]) and num(ci[1]):
            parts.append(f'<rect x="{sx(ci[0]):.1f}" y="{box_y - 3:.1f}" width="{max(2.0, sx(ci[1]) - sx(ci[0])):.1f}" height="18" fill="none" stroke="#111827" stroke-width="1"/>')
        if p50:
            parts.append(f'<line x1="{sx(p50):.1f}" y1="{box_y - 4:.1f}" x2="{sx(p50):.1f}" y2="{box_y + 16:.1f}" stroke="#111827" stroke-width="2"/>')
            label_x = sx(max(v for v in (p50, p75, num(ci[1]) if len(ci) == 2 else None) if v)) + 8
            parts.append(text(label_x, box_y + 10, f"{fmt_ms(p50)} ms", size=10, extra=' font-weight="600"'))
        if p99:
            x99 = sx(min(p99, hi))
            parts.append(f'<path d="M{x99:.1f},{box_y + 1:.1f}l5,5l-5,5l-5,-5z" fill="{e.color}"/>')
    parts.append(text(width - right, top - 6, "box: p25–p75 · whiskers: p5–p95 · black: p50 and its 95% interval · ◆ p99", anchor="end", size=10))
    return "".join(parts) + "</svg>"
