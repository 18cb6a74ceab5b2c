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

# The axis spans each model's box (p25-p75), its median's interval, and whichever of p1, p5, p95
# and p99 lie within the model's fences, Tukey's 1.5 interquartile ranges taken in log space
# (p25 / r**1.5 .. p75 * r**1.5 with r = p75/p25, at least 1.25x beyond the box so a timer's
# coarse steps do not cut a steady model's tail); a whisker or p99 beyond is clipped at the
# edge, marked with a wedge and written out in numbers. Slow runs otherwise take the width:
# with the axis stretched to every p99 and histogram edge, the test fixture's boxes (p75/p25
# about 1.08) were 27 px of 900 and shrank to 13 px when one model's p99 was 100x its median;
# the digits benchmark of tests/engine/test_bench_report.py, run on 2 busy cores of an AMD EPYC
# (avx2, fma; 2026-11-30), gave int8 a p95 of 10x its median at batch size 1, and both models'
# boxes there were slivers.
# The scale stays logarithmic: the engine bins the histograms in log space (so a 2x faster
# model sits as far from the baseline as a 2x slower one), and the models of one report can
# differ several-fold.
FENCE_IQR, FENCE_MIN = 1.5, 1.25
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


def _fences(q: dict[str, float | None]) -> tuple[float, float] | None:
    p25, p75 = q["p25"], q["p75"]
    if not (p25 and p75 and p75 >= p25 > 0):
        return None
    reach = max(min(p75 / p25, 1e6) ** FENCE_IQR, FENCE_MIN)  # capped: a damaged report's 1e300 must not overflow
    return p25 / reach, p75 * reach


def axis_range(models: list[Entry], batch_size: str) -> tuple[float, float] | None:
    values: list[float | None] = []
    for e in models:
        lat = e.metrics["latency_ms"][batch_size]
        q = _quantiles(lat)
        values += [q["p25"], q["p50"], q["p75"], *(lat.get("p50_ci95") or [])]
        fences = _fences(q)
        tails = [q[k] for k in ("p1", "p5", "p95", "p99")]
        values += [v for v in tails if v is not None and (fences is None or fences[0] <= v <= fences[1])]
    positive = [v for v in (num(v) for v in values) if v is not None and v > 0]
    return padded(min(positive), max(positive), 0.04, log=True) if positive else None


def _histogram(lat: dict[str, Any], sx: Scale, mid: float, color: str) -> tuple[str, str, str]:
    """The histogram's path within the axis, and notes on the runs above and below it, counted
    from the bins wholly outside (exact: such a bin holds only runs past its own edge)."""
    hist = lat.get("histogram") or {}
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    if len(edges) != len(counts) + 1 or not counts:
        return "", "", ""
    inside = [j for j in range(len(counts)) if edges[j + 1] > sx.lo and edges[j] < sx.hi]
    above = [j for j in range(len(counts)) if edges[j] >= sx.hi]
    below = [j for j in range(len(counts)) if edges[j + 1] <= sx.lo]
    n_above, n_below = sum(counts[j] for j in above), sum(counts[j] for j in below)
    note_above = f"{n_above:.0f} runs ≥ {fmt_ms(edges[above[0]])} ms" if n_above else ""
    note_below = f"{n_below:.0f} runs < {fmt_ms(edges[below[-1] + 1])} ms" if n_below else ""
    peak = max((counts[j] for j in inside), default=0)
    if not peak:
        return "", note_above, note_below
    d = [f"M{sx(max(edges[inside[0]], sx.lo)):.1f},{mid:.1f}"]
    for j in inside:
        d.append(f"V{mid - (LANE * 0.5) * counts[j] / peak:.1f}H{sx(min(edges[j + 1], sx.hi)):.1f}")
    d.append(f"V{mid:.1f}Z")
    path = f'<path d="{"".join(d)}" fill="{color}" fill-opacity="0.35" stroke="{color}" stroke-width="1"/>'
    return path, note_above, note_below


def _lane(e: Entry, lat: dict[str, Any], sx: Scale, y0: float) -> list[str]:
    mid = y0 + LANE * 0.62
    box_y = mid + 4
    parts = [text(LEFT - 10, mid + 4, short(e.id, 24), anchor="end", color=PARETO_COLOR if e.flags else TEXT_COLOR)]
    hist, runs_above, runs_below = _histogram(lat, sx, mid, e.color)
    parts.append(hist)
    q = _quantiles(lat)
    p5, p25, p50, p75, p95, p99 = q["p5"], q["p25"], q["p50"], q["p75"], q["p95"], q["p99"]
    if p5 and p95:
        parts.append(whisker(sx(max(p5, sx.lo)), sx(min(p95, sx.hi)), box_y + 6, e.color))
    if p25 and p75:
        parts.append(box(sx(p25), sx(p75), box_y, e.color))
    ci = lat.get("p50_ci95") or []
    if len(ci) == 2 and num(ci[0]) and num(ci[1]):
        parts.append(interval(sx(ci[0]), sx(ci[1]), box_y))
    if p50:
        parts.append(median(sx(p50), box_y))
        right_of = sx(max(v for v in (p50, p75, num(ci[1]) if len(ci) == 2 else None) if v)) + 8
        if right_of + 60 <= WIDTH - RIGHT - 10:
            parts.append(text(right_of, box_y + 10, f"{fmt_ms(p50)} ms", size=10, extra=' font-weight="600"'))
        else:  # no room before the edge (and its wedge): left of the box
            left_of = sx(min(v for v in (p50, p25, num(ci[0]) if len(ci) == 2 else None) if v)) - 8
            parts.append(text(left_of, box_y + 10, f"{fmt_ms(p50)} ms", size=10, anchor="end", extra=' font-weight="600"'))
    if p99 and sx.lo <= p99 <= sx.hi:
        parts.append(placed(diamond(e.color), sx(p99), box_y + 6, name="p99"))
    past = [f"{k} {fmt_ms(v)}" for k, v in (("p95", p95), ("p99", p99)) if v and v > sx.hi]
    notes = [" · ".join(past) + " ms" if past else "", runs_above, f"p5 {fmt_ms(p5)} ms" if p5 and p5 < sx.lo else "", runs_below]
    if past or runs_above:
        parts.append(placed(beyond(e.color), WIDTH - RIGHT, box_y + 6, name="beyond the axis"))
    parts += [text(WIDTH - RIGHT + 8, y0 + 16 + 12 * k, note, size=10) for k, note in enumerate(n for n in notes if n)]
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
