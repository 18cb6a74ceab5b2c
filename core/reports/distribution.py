"""The latency distribution of every model at one batch size: per model a lane with the histogram
of its runs, the interquartile box, the p5-p95 whiskers, the median with its 95% interval, p99."""

from __future__ import annotations

from typing import Any

from core.reports.entries import Entry, entries
from core.reports.format import fmt_ms, get, num, short
from core.reports.palette import (
    DISTRIBUTION_TINT,
    GRID_COLOR,
    INK_COLOR,
    MUTED_COLOR,
    PARETO_COLOR,
    TEXT_COLOR,
)
from core.reports.svg import Scale, log_ticks, padded, placed, svg_open, text, tick_labels

# The axis spans what the boxes and whiskers need, p1 and p99 included while they stay within
# this factor of p5 and p95; a tail beyond is left to a mark at the edge and a note in numbers.
# A few runs 100x slower otherwise take most of the width: with the axis stretched to every p99
# and histogram edge, the test fixture's interquartile boxes (p75/p25 about 1.08) were 27 px of
# 900 and shrank to 13 px when one model's p99 was 100x its median; scaled to the whiskers they
# are 41 px of 780 either way. The scale stays logarithmic: the engine bins the histograms in
# log space (so a 2x faster model sits as far from the baseline as a 2x slower one), and the
# models of one report can differ several-fold.
TAIL_REACH = 2.0
LANE, WIDTH = 58, 1100
LEFT, RIGHT, TOP, BOTTOM = 170, 150, 34, 46


def diamond(color: str) -> str:
    return f'<path d="M0,-5l5,5l-5,5l-5,-5z" fill="{color}"/>'


def beyond(color: str) -> str:
    """Runs past the right end of the axis: a wedge whose tip touches the edge."""
    return f'<path d="M-9,-6L0,0L-9,6Z" fill="{color}"/>'


def whisker(x0: float, x1: float, y: float, color: str) -> str:
    return f'<line x1="{x0:.1f}" y1="{y:.1f}" x2="{x1:.1f}" y2="{y:.1f}" stroke="{color}" stroke-width="1.5"/>'


def box(x0: float, x1: float, y: float, color: str) -> str:
    return f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(1.5, x1 - x0):.1f}" height="12" fill="{color}" fill-opacity="0.8"/>'


def median(x: float, y: float) -> str:
    return f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x:.1f}" y2="{y + 16:.1f}" stroke="{INK_COLOR}" stroke-width="2"/>'


def interval(x0: float, x1: float, y: float) -> str:
    return f'<rect x="{x0:.1f}" y="{y - 3:.1f}" width="{max(2.0, x1 - x0):.1f}" height="18" fill="none" stroke="{INK_COLOR}" stroke-width="1"/>'


def _quantiles(lat: dict[str, Any]) -> dict[str, float | None]:
    q = lat.get("quantiles") or {}
    out = {k: num(q.get(k)) for k in ("p1", "p5", "p25", "p75", "p95")}
    out["p50"] = num(lat.get("p50"))
    out["p99"] = num(lat.get("p99")) or num(q.get("p99"))
    return out


def axis_range(models: list[Entry], batch_size: str) -> tuple[float, float] | None:
    values: list[float | None] = []
    for e in models:
        lat = e.metrics["latency_ms"][batch_size]
        q = _quantiles(lat)
        values += [q["p5"], q["p25"], q["p50"], q["p75"], q["p95"], *(lat.get("p50_ci95") or [])]
        p1, p5, p95, p99 = q["p1"], q["p5"], q["p95"], q["p99"]
        if p99 is not None and (p95 is None or p99 <= p95 * TAIL_REACH):
            values.append(p99)
        if p1 is not None and (p5 is None or p1 >= p5 / TAIL_REACH):
            values.append(p1)
    positive = [v for v in (num(v) for v in values) if v is not None and v > 0]
    return padded(min(positive), max(positive), 0.04, log=True) if positive else None


def _histogram(lat: dict[str, Any], sx: Scale, mid: float, color: str) -> tuple[str, list[str]]:
    """The histogram's path within the axis, and notes on the runs whose bins lie wholly outside
    it (exact counts: a bin past the end holds only runs past its own edge)."""
    hist = lat.get("histogram") or {}
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    if len(edges) != len(counts) + 1 or not counts:
        return "", []
    inside = [j for j in range(len(counts)) if edges[j + 1] > sx.lo and edges[j] < sx.hi]
    above = [j for j in range(len(counts)) if edges[j] >= sx.hi]
    below = [j for j in range(len(counts)) if edges[j + 1] <= sx.lo]
    notes = []
    if sum(counts[j] for j in above):
        notes.append(f"{sum(counts[j] for j in above):.0f} runs ≥ {fmt_ms(edges[above[0]])} ms")
    if sum(counts[j] for j in below):
        notes.append(f"{sum(counts[j] for j in below):.0f} runs < {fmt_ms(edges[below[-1] + 1])} ms")
    peak = max((counts[j] for j in inside), default=0)
    if not peak:
        return "", notes
    d = [f"M{sx(max(edges[inside[0]], sx.lo)):.1f},{mid:.1f}"]
    for j in inside:
        d.append(f"V{mid - (LANE * 0.5) * counts[j] / peak:.1f}H{sx(min(edges[j + 1], sx.hi)):.1f}")
    d.append(f"V{mid:.1f}Z")
    return f'<path d="{"".join(d)}" fill="{color}" fill-opacity="0.35" stroke="{color}" stroke-width="1"/>', notes


def _lane(e: Entry, lat: dict[str, Any], sx: Scale, y0: float) -> list[str]:
    mid = y0 + LANE * 0.62
    box_y = mid + 4
    parts = [text(LEFT - 10, mid + 4, short(e.id, 24), anchor="end", color=PARETO_COLOR if e.flags else TEXT_COLOR)]
    hist, notes = _histogram(lat, sx, mid, e.color)
    parts.append(hist)
    q = _quantiles(lat)
    p5, p25, p50, p75, p95, p99 = q["p5"], q["p25"], q["p50"], q["p75"], q["p95"], q["p99"]
    if p5 and p95:
        parts.append(whisker(sx(p5), sx(p95), box_y + 6, e.color))
    if p25 and p75:
        parts.append(box(sx(p25), sx(p75), box_y, e.color))
    ci = lat.get("p50_ci95") or []
    if len(ci) == 2 and num(ci[0]) and num(ci[1]):
        parts.append(interval(sx(ci[0]), sx(ci[1]), box_y))
    if p50:
        parts.append(median(sx(p50), box_y))
        label_x = sx(max(v for v in (p50, p75, num(ci[1]) if len(ci) == 2 else None) if v)) + 8
        parts.append(text(label_x, box_y + 10, f"{fmt_ms(p50)} ms", size=10, extra=' font-weight="600"'))
    if p99 and p99 > sx.hi:
        notes.insert(0, f"p99 {fmt_ms(p99)} ms")
    elif p99:
        parts.append(placed(diamond(e.color), sx(p99), box_y + 6, name="p99"))
    if notes:
        parts.append(placed(beyond(e.color), WIDTH - RIGHT, box_y + 6, name="beyond the axis"))
        parts += [text(WIDTH - RIGHT + 8, y0 + 26 + 12 * k, note, size=10) for k, note in enumerate(notes)]
    return parts


def _key(y: float) -> list[str]:
    """The marks of a lane, drawn as the lanes draw them (in grey here, in each model's colour there)."""
    c, x = MUTED_COLOR, float(LEFT)
    parts = [whisker(x, x + 24, y, c), text(x + 30, y + 4, "p5–p95", size=10)]
    x += 80
    parts += [box(x, x + 20, y - 6, c), text(x + 26, y + 4, "p25–p75", size=10)]
    x += 84
    parts += [interval(x, x + 12, y - 6), median(x + 6, y - 6), text(x + 18, y + 4, "p50 and its 95% interval", size=10)]
    x += 160
    parts += [placed(diamond(c), x + 5, y, name="p99"), text(x + 16, y + 4, "p99", size=10)]
    x += 50
    parts += [placed(beyond(c), x + 9, y, name="beyond the axis"), text(x + 16, y + 4, "runs beyond the axis, in numbers on the right", size=10)]
    return parts


def distribution_svg(report: dict[str, Any], batch_size: str) -> str:
    models = [e for e in entries(report) if get(e.metrics, "latency_ms", batch_size)]
    height = TOP + BOTTOM + LANE * max(1, len(models))
    parts = [svg_open(WIDTH, height, f"latency distributions at batch size {batch_size}")]
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{LANE * max(1, len(models))}" fill="{DISTRIBUTION_TINT}"/>')
    span = axis_range(models, batch_size)
    if span is None:
        return "".join(parts) + "</svg>"
    sx = Scale(*span, LEFT, WIDTH - RIGHT, log=True)
    ticks = log_ticks(*span)
    for t, label in zip(ticks, tick_labels(ticks, log=True), strict=True):
        px = sx(t)
        parts.append(f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{height - BOTTOM}" stroke="{GRID_COLOR}"/>')
        parts.append(text(px, height - BOTTOM + 16, label, anchor="middle"))
    parts.append(text((LEFT + WIDTH - RIGHT) / 2, height - 10, f"latency at batch size {batch_size} (ms, log scale)", anchor="middle"))
    for i, e in enumerate(models):
        parts += _lane(e, e.metrics["latency_ms"][batch_size], sx, TOP + i * LANE)
    parts += _key(TOP - 16)
    return "".join(parts) + "</svg>"
