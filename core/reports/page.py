"""A benchmark report as one self-contained HTML page: no scripts, no fonts, no external assets;
the plots are inline SVG drawn here. Standard library only (the API process renders it and never
imports torch, onnx or numpy).

The page: a summary sentence per candidate, the table of baseline vs candidates with ratios and
flags, latency against quality with the Pareto front, the latency distribution of every model at
every batch size, per-layer sensitivity when a pass produced it, the environment, the config.

Everything that comes from the report is escaped: layer names and candidate ids come from user
uploads. A Content-Security-Policy forbids the page to load anything at all.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BASELINE_COLOR = "#6b7280"
CANDIDATE_COLORS = ("#2563eb", "#d97706", "#16a34a", "#db2777", "#0891b2", "#7c3aed", "#92400e", "#4d7c0f")
PARETO_COLOR = "#dc2626"
KEPT_FLOAT_COLOR = "#ea580c"
QUANTIZED_COLOR = "#0f766e"
GRID_COLOR = "#e5e7eb"
AXIS_COLOR = "#9ca3af"
TEXT_COLOR = "#374151"
# Each kind of plot has a plot area of its own faint tint, so the page can be checked (and read)
# plot by plot.
SCATTER_TINT = "#f3f7fd"
DISTRIBUTION_TINT = "#f8f4fc"
SENSITIVITY_TINT = "#f7f8ec"

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------------------------------------
# Numbers as people read them


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


def fmt_bytes(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(v) < 1000 or unit == "TB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.3g} {unit}"
        v /= 1000
    return "—"


def fmt_count(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "—"
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.3g}{unit}"
    return f"{v:.0f}"


def fmt_ms(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_ratio(value: Any) -> str:
    v = _num(value)
    return "—" if v is None else f"{v:.2f}×"


def fmt_float(value: Any, digits: int = 4) -> str:
    v = _num(value)
    return "—" if v is None else f"{v:.{digits}g}"


def _get(d: Any, *keys: Any) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


# ---------------------------------------------------------------------------------------------
# A stored report, coerced into the shape the page draws. Reports come from our engine, but the
# page is served from whatever JSON was stored: a part of the wrong type is dropped, never fatal.


def _dict(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _pair(value: Any) -> list[float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = _num(value[0]), _num(value[1])
        if lo is not None and hi is not None:
            return [lo, hi]
    return None


def _numbers(value: Any) -> list[float] | None:
    if not isinstance(value, list):
        return None
    out = [_num(v) for v in value]
    return None if any(v is None for v in out) else [v for v in out if v is not None]


def _latency(value: Any) -> dict[str, Any]:
    lat = _dict(value)
    out: dict[str, Any] = {k: _num(lat.get(k)) for k in ("p50", "p90", "p99", "mean", "min", "max")}
    out["runs"] = _num(lat.get("runs"))
    out["p50_ci95"] = _pair(lat.get("p50_ci95"))
    out["quantiles"] = {k: v for k, v in ((k, _num(v)) for k, v in _dict(lat.get("quantiles")).items()) if v is not None}
    hist = _dict(lat.get("histogram"))
    edges, counts = _numbers(hist.get("edges")), _numbers(hist.get("counts"))
    if edges and counts and len(edges) == len(counts) + 1 and all(c >= 0 for c in counts) and edges[0] > 0:
        out["histogram"] = {"edges": edges, "counts": counts}
    return out


def _metrics(value: Any) -> dict[str, Any]:
    m = _dict(value)
    m["latency_ms"] = {bs: _latency(v) for bs, v in _dict(m.get("latency_ms")).items() if isinstance(v, dict)}
    for key in ("quality", "fidelity", "memory", "runtime"):
        m[key] = _dict(m.get(key))
    m["memory"]["peak_above_idle_bytes"] = _dict(m["memory"].get("peak_above_idle_bytes"))
    return m


def _candidate(value: dict[str, Any], index: int) -> dict[str, Any]:
    ratios = _dict(value.get("ratios"))
    speedup = {}
    for bs, item in _dict(ratios.get("speedup")).items():
        item = _dict(item)
        speedup[bs] = {"value": _num(item.get("value")), "ci95": _pair(item.get("ci95")), "verdict": str(item.get("verdict") or "")}
    ratios["speedup"] = speedup
    change = _dict(ratios.get("quality_change"))
    ratios["quality_change"] = (
        {**change, "metric": str(change.get("metric")), "delta_ci95": _pair(change.get("delta_ci95"))}
        if change.get("metric")
        else None
    )
    flags = value.get("flags")
    return {
        **value,
        "id": str(value.get("id") or f"candidate {index + 1}"),
        "metrics": _metrics(value.get("metrics")),
        "ratios": ratios,
        "flags": [str(f) for f in flags] if isinstance(flags, list) else [],
        "flag_reasons": {k: str(v) for k, v in _dict(value.get("flag_reasons")).items()},
    }


def _sensitivity(value: Any) -> dict[str, Any] | None:
    section = _dict(value)
    layers = []
    for layer in section.get("layers") if isinstance(section.get("layers"), list) else []:
        layer = _dict(layer)
        if _num(layer.get("score")) is not None:
            layers.append({"name": str(layer.get("name", "")), "score": _num(layer["score"]), "kept_float": bool(layer.get("kept_float"))})
    return {"metric": str(section.get("metric") or "score"), "layers": layers} if layers else None


def normalized(report: Any) -> dict[str, Any]:
    r = _dict(report)
    out = dict(r)
    out["baseline"] = _metrics(r.get("baseline"))
    candidates = r.get("candidates") if isinstance(r.get("candidates"), list) else []
    out["candidates"] = [_candidate(c, i) for i, c in enumerate(candidates) if isinstance(c, dict)]
    for key in ("environment", "config", "dataset", "sections"):
        out[key] = _dict(r.get(key))
    out["sections"] = {**out["sections"], "sensitivity": _sensitivity(out["sections"].get("sensitivity"))}
    steps = r.get("steps") if isinstance(r.get("steps"), list) else []
    out["steps"] = [_dict(s) for s in steps if isinstance(s, dict)]
    notes = r.get("notes") if isinstance(r.get("notes"), list) else []
    out["notes"] = [str(n) for n in notes]
    best = r.get("best_candidate_id")
    out["best_candidate_id"] = str(best) if best else None
    return out


# ---------------------------------------------------------------------------------------------
# The models of a report


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
    primary = _get(report, "baseline", "quality", "primary")
    if primary and all(_num(_get(e.metrics, "quality", primary)) is not None for e in models):
        lower = primary in ("mse", "mae", "rmse", "loss")
        return QualityAxis(
            f"{primary} ({'lower' if lower else 'higher'} is better)",
            lambda e: _num(_get(e.metrics, "quality", primary)),
            not lower,
        )

    def cosine(e: Entry) -> float | None:
        return 1.0 if e.candidate is None else _num(_get(e.metrics, "fidelity", "cosine_mean"))

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


# ---------------------------------------------------------------------------------------------
# SVG helpers


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    if lo <= 0 or not hi > lo:
        return [lo]
    ticks = []
    for exp in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            t = m * 10**exp
            if lo <= t <= hi:
                ticks.append(t)
    if len(ticks) < 3:
        ticks = sorted(set(ticks) | {lo, hi, math.sqrt(lo * hi)})
    return ticks


def tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.2g}"
    return f"{v:.4g}"


@dataclass
class Scale:
    lo: float
    hi: float
    a: float  # pixel of lo
    b: float  # pixel of hi
    log: bool = False

    def __call__(self, v: float) -> float:
        if self.log:
            lo, hi, v = math.log(self.lo), math.log(self.hi), math.log(max(v, self.lo * 1e-3))
        else:
            lo, hi = self.lo, self.hi
        if hi == lo:
            return (self.a + self.b) / 2
        return self.a + (v - lo) / (hi - lo) * (self.b - self.a)


def _padded(lo: float, hi: float, pad: float = 0.08, log: bool = False) -> tuple[float, float]:
    if log:
        lo, hi = max(lo, 1e-9), max(hi, 1e-9)
        if hi <= lo * 1.0001:
            return lo / 1.2, hi * 1.2
        f = (hi / lo) ** pad
        return lo / f, hi * f
    if hi <= lo:
        span = abs(lo) * 0.05 or 1.0
        return lo - span, hi + span
    span = hi - lo
    return lo - span * pad, hi + span * pad


def _text(x: float, y: float, s: str, *, size: int = 11, anchor: str = "start", color: str = TEXT_COLOR, extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}"{extra}>{esc(s)}</text>'


def _svg_open(width: int, height: int, label: str) -> str:
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{esc(label)}" font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif">'
    )


# ---------------------------------------------------------------------------------------------
# Figures


def scatter_svg(report: dict[str, Any], batch_size: str) -> str:
    """Latency (p50, with its 95% interval) against quality, with the Pareto front."""
    axis = quality_axis(report)
    models = entries(report)
    points = []
    for e in models:
        lat = _get(e.metrics, "latency_ms", batch_size) or {}
        x, q = _num(lat.get("p50")), axis.value(e)
        if x is not None and q is not None:
            ci = lat.get("p50_ci95") or [x, x]
            points.append((e, x, q, _num(ci[0]) or x, _num(ci[1]) or x))
    width, height = 820, 430
    left, right, top, bottom = 78, 190, 34, 56
    parts = [_svg_open(width, height, f"latency against quality at batch size {batch_size}")]
    parts.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="{SCATTER_TINT}"/>')
    if not points:
        parts.append(_text(width / 2, height / 2, "no model has both a latency and a quality", anchor="middle"))
        return "".join(parts) + "</svg>"
    xs = [p[3] for p in points] + [p[4] for p in points]
    ys = [p[2] for p in points]
    log_x = max(xs) / max(min(xs), 1e-12) > 8
    xlo, xhi = _padded(min(xs), max(xs), 0.1, log=log_x)
    if not log_x:
        xlo = max(0.0, xlo)
    ylo, yhi = _padded(min(ys), max(ys), 0.15)
    sx = Scale(xlo, xhi, left, width - right, log=log_x)
    sy = Scale(ylo, yhi, height - bottom, top)
    for t in log_ticks(xlo, xhi) if log_x else nice_ticks(xlo, xhi, 6):
        px = sx(t)
        parts.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{height - bottom}" stroke="{GRID_COLOR}"/>')
        parts.append(_text(px, height - bottom + 16, tick_label(t), anchor="middle"))
    for t in nice_ticks(ylo, yhi, 5):
        py = sy(t)
        parts.append(f'<line x1="{left}" y1="{py:.1f}" x2="{width - right}" y2="{py:.1f}" stroke="{GRID_COLOR}"/>')
        parts.append(_text(left - 6, py + 4, tick_label(t), anchor="end"))
    parts.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="{AXIS_COLOR}"/>')
    parts.append(_text((left + width - right) / 2, height - 14, f"p50 latency at batch size {batch_size} (ms{', log scale' if log_x else ''}); bars: 95% interval", anchor="middle"))
    parts.append(_text(16, (top + height - bottom) / 2, axis.label, anchor="middle", extra=f' transform="rotate(-90 16 {(top + height - bottom) / 2:.1f})"'))
    better_y = top + 14 if axis.higher_is_better else height - bottom - 8
    parts.append(_text(left + 8, better_y, "← better", color="#6b7280", size=10))

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
        parts.append(_text(px + 13, py - 9, _short(e.id, 22), size=11, color=TEXT_COLOR))
    # Legend, right of the plot.
    lx, ly = width - right + 16, top + 8
    parts.append(f'<path d="M{lx},{ly} h26" stroke="{PARETO_COLOR}" stroke-width="2.5" stroke-dasharray="7 4"/>')
    parts.append(_text(lx + 32, ly + 4, "Pareto front"))
    ly += 20
    parts.append(f'<circle cx="{lx + 13}" cy="{ly}" r="6" fill="#ffffff" stroke="{TEXT_COLOR}" stroke-width="2.5"/>')
    parts.append(_text(lx + 32, ly + 4, "flagged"))
    for e in models[:12]:
        ly += 20
        parts.append(f'<circle cx="{lx + 13}" cy="{ly}" r="6" fill="{e.color}"/>')
        parts.append(_text(lx + 32, ly + 4, _short(e.id, 20)))
    return "".join(parts) + "</svg>"


def distribution_svg(report: dict[str, Any], batch_size: str) -> str:
    """Per model, a lane: the histogram of its runs (log time axis), the interquartile box, the
    p5-p95 whiskers, the median with its 95% interval, and p99."""
    models = [e for e in entries(report) if _get(e.metrics, "latency_ms", batch_size)]
    lane, width = 58, 1100
    left, right, top, bottom = 170, 30, 20, 46
    height = top + bottom + lane * max(1, len(models))
    parts = [_svg_open(width, height, f"latency distributions at batch size {batch_size}")]
    parts.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{lane * max(1, len(models))}" fill="{DISTRIBUTION_TINT}"/>')
    values: list[float] = []
    for e in models:
        lat = e.metrics["latency_ms"][batch_size]
        q = lat.get("quantiles") or {}
        values += [v for v in (_num(q.get("p1")), _num(q.get("p5")), _num(lat.get("p50")), _num(lat.get("p99")), _num(q.get("p95"))) if v]
        edges = _get(lat, "histogram", "edges") or []
        values += [v for v in (_num(edges[0]) if edges else None, _num(edges[-1]) if edges else None) if v]
    if not values:
        return "".join(parts) + "</svg>"
    lo, hi = _padded(min(values), max(values), 0.04, log=True)
    sx = Scale(lo, hi, left, width - right, log=True)
    for t in log_ticks(lo, hi):
        px = sx(t)
        parts.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{height - bottom}" stroke="{GRID_COLOR}"/>')
        parts.append(_text(px, height - bottom + 16, tick_label(t), anchor="middle"))
    parts.append(_text((left + width - right) / 2, height - 10, f"latency at batch size {batch_size} (ms, log scale)", anchor="middle"))
    for i, e in enumerate(models):
        lat = e.metrics["latency_ms"][batch_size]
        y0 = top + i * lane
        mid = y0 + lane * 0.62
        parts.append(_text(left - 10, mid + 4, _short(e.id, 24), anchor="end", color=PARETO_COLOR if e.flags else TEXT_COLOR))
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
        p5, p25, p75, p95 = (_num(q.get(k)) for k in ("p5", "p25", "p75", "p95"))
        p50, p99 = _num(lat.get("p50")), _num(lat.get("p99"))
        box_y = mid + 4
        if p5 and p95:
            parts.append(f'<line x1="{sx(p5):.1f}" y1="{box_y + 6:.1f}" x2="{sx(p95):.1f}" y2="{box_y + 6:.1f}" stroke="{e.color}" stroke-width="1.5"/>')
        if p25 and p75:
            parts.append(f'<rect x="{sx(p25):.1f}" y="{box_y:.1f}" width="{max(1.5, sx(p75) - sx(p25)):.1f}" height="12" fill="{e.color}" fill-opacity="0.8"/>')
        ci = lat.get("p50_ci95") or []
        if len(ci) == 2 and _num(ci[0]) and _num(ci[1]):
            parts.append(f'<rect x="{sx(ci[0]):.1f}" y="{box_y - 3:.1f}" width="{max(2.0, sx(ci[1]) - sx(ci[0])):.1f}" height="18" fill="none" stroke="#111827" stroke-width="1"/>')
        if p50:
            parts.append(f'<line x1="{sx(p50):.1f}" y1="{box_y - 4:.1f}" x2="{sx(p50):.1f}" y2="{box_y + 16:.1f}" stroke="#111827" stroke-width="2"/>')
            label_x = sx(max(v for v in (p50, p75, _num(ci[1]) if len(ci) == 2 else None) if v)) + 8
            parts.append(_text(label_x, box_y + 10, f"{fmt_ms(p50)} ms", size=10, extra=' font-weight="600"'))
        if p99:
            x99 = sx(min(p99, hi))
            parts.append(f'<path d="M{x99:.1f},{box_y + 1:.1f}l5,5l-5,5l-5,-5z" fill="{e.color}"/>')
    parts.append(_text(width - right, top - 6, "box: p25–p75 · whiskers: p5–p95 · black: p50 and its 95% interval · ◆ p99", anchor="end", size=10))
    return "".join(parts) + "</svg>"


def sensitivity_svg(section: dict[str, Any]) -> str:
    """Per-layer sensitivity as bars, layers in graph order; layers kept in float stand out."""
    layers = [layer for layer in section.get("layers") or [] if _num(layer.get("score")) is not None]
    metric = str(section.get("metric") or "score")
    width, height = 1100, 380 if len(layers) <= 40 else 300
    left, right, top = 70, 20, 30
    bottom = 110 if len(layers) <= 40 else 40
    parts = [_svg_open(width, height, f"per-layer sensitivity ({metric})")]
    parts.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="{SENSITIVITY_TINT}"/>')
    if not layers:
        return "".join(parts) + "</svg>"
    scores = [float(layer["score"]) for layer in layers]
    lo, hi = min(scores), max(scores)
    ylo, yhi = _padded(lo, hi, 0.1)
    if lo >= 0 and lo - (hi - lo) * 2 <= 0:
        ylo = 0.0  # start at zero when the bars would not lose their contrast
    sy = Scale(ylo, yhi, height - bottom, top)
    for t in nice_ticks(ylo, yhi, 5):
        py = sy(t)
        parts.append(f'<line x1="{left}" y1="{py:.1f}" x2="{width - right}" y2="{py:.1f}" stroke="{GRID_COLOR}"/>')
        parts.append(_text(left - 6, py + 4, tick_label(t), anchor="end"))
    slot = (width - left - right) / len(layers)
    bar = max(1.0, slot * 0.75)
    for i, layer in enumerate(layers):
        x = left + i * slot + (slot - bar) / 2
        y = sy(float(layer["score"]))
        color = KEPT_FLOAT_COLOR if layer.get("kept_float") else QUANTIZED_COLOR
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(1.0, height - bottom - y):.1f}" fill="{color}"><title>{esc(layer.get("name"))}: {esc(layer.get("score"))}</title></rect>')
        if len(layers) <= 40:
            cx, cy = x + bar / 2, height - bottom + 8
            parts.append(_text(cx, cy, _short(str(layer.get("name", "")), 18), size=9, anchor="end", extra=f' transform="rotate(-55 {cx:.1f} {cy:.1f})"'))
    parts.append(_text(14, (top + height - bottom) / 2, metric, anchor="middle", extra=f' transform="rotate(-90 14 {(top + height - bottom) / 2:.1f})"'))
    lx = width - right - 260
    parts.append(f'<rect x="{lx}" y="8" width="12" height="12" fill="{QUANTIZED_COLOR}"/>')
    parts.append(_text(lx + 18, 18, "quantized"))
    parts.append(f'<rect x="{lx + 100}" y="8" width="12" height="12" fill="{KEPT_FLOAT_COLOR}"/>')
    parts.append(_text(lx + 118, 18, "kept in float"))
    return "".join(parts) + "</svg>"


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else "…" + s[-(n - 1) :]


# ---------------------------------------------------------------------------------------------
# Tables and text


def _speedup_html(s: dict[str, Any] | None) -> str:
    if not s:
        return ""
    ci = s.get("ci95") or [None, None]
    verdict = s.get("verdict") or ""
    cls = {"faster": "good", "slower": "bad"}.get(verdict, "same")
    title = {"faster": "faster: the 95% interval is above 1", "slower": "slower: the 95% interval is below 1"}.get(
        verdict, "no significant difference: the 95% interval contains 1"
    )
    return (
        f'<div class="speed {cls}" title="{esc(title)}">{fmt_ratio(s.get("value"))} '
        f'<span class="ci">[{fmt_float(ci[0], 3)}, {fmt_float(ci[1], 3)}]</span></div>'
    )


def _quality_cell(e: Entry) -> str:
    q = e.metrics.get("quality") or {}
    primary = q.get("primary")
    if not primary:
        return "<td>—</td>"
    text = f"{esc(primary)} {fmt_float(q.get(primary), 4)}"
    change = _get(e.candidate, "ratios", "quality_change")
    if change:
        delta = _num(change.get("delta"))
        ci = change.get("delta_ci95")
        sign = "+" if (delta or 0) >= 0 else ""
        cls = "bad" if (_num(change.get("drop")) or 0) > 0 else "good"
        text += f'<div class="ci {cls}">Δ {sign}{fmt_float(delta, 3)}'
        if ci:
            text += f" [{fmt_float(ci[0], 3)}, {fmt_float(ci[1], 3)}]"
        text += "</div>"
    return f"<td>{text}</td>"


def _fidelity_cell(e: Entry) -> str:
    f = e.metrics.get("fidelity")
    if not f:
        return "<td>reference</td>" if e.candidate is None else "<td>—</td>"
    if f.get("error"):
        return f"<td>not comparable: {esc(f['error'])}</td>"
    top1 = f.get("top1_agreement")
    extra = f"<br>top-1 {fmt_float(top1, 4)}" if top1 is not None else ""
    return (
        f"<td>cos {fmt_float(f.get('cosine_mean'), 5)} (min {fmt_float(f.get('cosine_min'), 4)})"
        f"<br>max |err| {fmt_float(f.get('max_abs_error'), 3)}{extra}</td>"
    )


def _recipe_text(recipe: Any) -> str:
    if not recipe:
        return ""
    steps = []
    for step in recipe if isinstance(recipe, list) else [recipe]:
        if isinstance(step, dict):
            head = " ".join(str(step[k]) for k in ("op", "method") if k in step)
            rest = ", ".join(f"{k}={v}" for k, v in step.items() if k not in ("op", "method", "resolved"))
            steps.append(f"{head} ({rest})" if rest else head)
        else:
            steps.append(str(step))
    return " → ".join(steps)


def models_table(report: dict[str, Any]) -> str:
    sizes = batch_sizes(report)
    best = report.get("best_candidate_id")
    head = ["model", "size (compressed)", "params (non-zero)", "MACs / sample", "peak memory"]
    head += [f"batch {bs}: p50 ms, speedup" for bs in sizes]
    head += ["quality", "fidelity", "flags"]
    rows = []
    largest = sizes[-1] if sizes else None
    for e in entries(report):
        m = e.metrics
        r = (e.candidate or {}).get("ratios") or {}
        cls = "flagged" if e.flags else ("best" if e.candidate and e.id == best else "")
        badge = ' <span class="badge best">best</span>' if e.candidate and e.id == best else ""
        recipe = _recipe_text((e.candidate or {}).get("recipe"))
        name = f'<span class="swatch" style="background:{e.color}"></span><b>{esc(e.id)}</b>{badge}'
        if recipe:
            name += f'<div class="recipe">{esc(recipe)}</div>'
        cells = [f"<td>{name}</td>"]
        size = f"{fmt_bytes(m.get('size_bytes'))} ({fmt_bytes(m.get('compressed_size_bytes'))})"
        if r.get("size") is not None:
            size += f'<div class="ci">{fmt_ratio(r.get("size"))} smaller ({fmt_ratio(r.get("compressed_size"))})</div>'
        cells.append(f"<td>{size}</td>")
        params = f"{fmt_count(m.get('params'))} ({fmt_count(m.get('nonzero_params'))})"
        if r.get("nonzero_params") is not None:
            params += f'<div class="ci">{fmt_ratio(r.get("nonzero_params"))} fewer non-zero</div>'
        cells.append(f"<td>{params}</td>")
        macs_text = fmt_count(m.get("macs"))
        if r.get("macs") is not None:
            macs_text += f'<div class="ci">{fmt_ratio(r.get("macs"))} fewer</div>'
        cells.append(f"<td>{macs_text}</td>")
        mem = _get(m, "memory", "peak_above_idle_bytes", largest) if largest else None
        mem_text = fmt_bytes(mem) + (f'<div class="ci">batch {esc(largest)}, above idle</div>' if mem is not None else "")
        if _get(m, "memory", "error"):
            mem_text = f'<span title="{esc(m["memory"]["error"])}">not measured</span>'
        cells.append(f"<td>{mem_text}</td>")
        for bs in sizes:
            lat = _get(m, "latency_ms", bs) or {}
            ci = lat.get("p50_ci95") or [None, None]
            cell = f"{fmt_ms(lat.get('p50'))} <span class=\"ci\">[{fmt_ms(ci[0])}, {fmt_ms(ci[1])}] · p99 {fmt_ms(lat.get('p99'))}</span>"
            cell += _speedup_html(_get(r, "speedup", bs)) if e.candidate else '<div class="speed same">1×</div>'
            cells.append(f"<td>{cell}</td>")
        cells.append(_quality_cell(e))
        cells.append(_fidelity_cell(e))
        reasons = (e.candidate or {}).get("flag_reasons") or {}
        flags = "".join(
            f'<span class="badge flag" title="{esc(reasons.get(f, ""))}">{esc(f.replace("_", " "))}</span>' for f in e.flags
        )
        cells.append(f"<td>{flags or ('—' if e.candidate else '')}</td>")
        rows.append(f'<tr class="{cls}">{"".join(cells)}</tr>')
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f'<div class="scroll"><table class="models"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def summary_lines(report: dict[str, Any]) -> list[str]:
    """One sentence per candidate: what it gains and what it costs, with the intervals."""
    lines = []
    for e in entries(report)[1:]:
        r = (e.candidate or {}).get("ratios") or {}
        bits = []
        for bs, s in (r.get("speedup") or {}).items():
            ci = s.get("ci95") or [None, None]
            verdict = {"faster": "faster", "slower": "slower"}.get(s.get("verdict"), "no significant difference")
            bits.append(f"{fmt_ratio(s.get('value'))} speed at batch {bs} (95% CI {fmt_float(ci[0], 3)}–{fmt_float(ci[1], 3)}: {verdict})")
        if r.get("size") is not None:
            bits.append(f"{fmt_ratio(r['size'])} smaller on disk")
        change = r.get("quality_change")
        if change:
            bits.append(f"{change['metric']} {fmt_float(change.get('baseline'), 4)} → {fmt_float(change.get('candidate'), 4)}")
        cos = _get(e.metrics, "fidelity", "cosine_mean")
        if cos is not None:
            bits.append(f"output cosine {fmt_float(cos, 5)}")
        text = f"<b>{esc(e.id)}</b>: " + esc("; ".join(bits)) if bits else f"<b>{esc(e.id)}</b>"
        reasons = (e.candidate or {}).get("flag_reasons") or {}
        for flag in e.flags:
            text += f' <span class="badge flag">{esc(flag.replace("_", " "))}</span> {esc(reasons.get(flag, ""))}'
        lines.append(text)
    return lines


def kv_table(data: dict[str, Any]) -> str:
    rows = []
    for k, v in data.items():
        value = ", ".join(str(x) for x in v) if isinstance(v, list) else json.dumps(v) if isinstance(v, dict) else str(v)
        rows.append(f"<tr><th>{esc(k)}</th><td>{esc(value)}</td></tr>")
    return f'<table class="kv">{"".join(rows)}</table>'


STYLE = """
body{margin:0;background:#ffffff;color:#111827;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px}h3{font-size:15px;margin:18px 0 6px}
.meta{color:#6b7280;font-size:13px}
.note{background:#fffbeb;border:1px solid #fde68a;padding:6px 10px;font-size:13px}
.summary li{margin:4px 0}
table{border-collapse:collapse}
table.models{font-size:12.5px;width:100%}
table.models th{background:#eef0f3;text-align:left;padding:6px 8px;border-bottom:1px solid #d1d5db}
table.models td{padding:6px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top}
tr.flagged td{background:#fef2f2}tr.best td{background:#f0fdf4}
.ci{color:#6b7280;font-size:11px}.recipe{color:#6b7280;font-size:11px;max-width:260px}
.speed{font-weight:600;margin-top:2px}.speed.good{color:#15803d}.speed.bad{color:#b91c1c}.speed.same{color:#374151}
.ci.good{color:#15803d}.ci.bad{color:#b91c1c}
.badge{display:inline-block;border-radius:9px;padding:0 7px;font-size:11px;margin:1px 2px;white-space:nowrap}
.badge.flag{background:#fee2e2;color:#991b1b;border:1px solid #fca5a5}.badge.best{background:#dcfce7;color:#166534;border:1px solid #86efac}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
figure{margin:10px 0 18px}figcaption{color:#4b5563;font-size:12.5px;margin-top:4px;max-width:900px}
.scroll{overflow-x:auto}
table.kv th{text-align:left;padding:3px 12px 3px 0;color:#4b5563;font-weight:500;vertical-align:top}
table.kv td{padding:3px 0;font-family:ui-monospace,Menlo,monospace;font-size:12px}
details{margin:8px 0}pre{background:#f9fafb;border:1px solid #e5e7eb;padding:10px;overflow-x:auto;font-size:12px}
"""


def _safe(draw: Callable[..., str], *args: Any) -> str:
    """One part of the page; a part that cannot be drawn says so and the page still renders."""
    try:
        return draw(*args)
    except Exception as exc:  # noqa: BLE001 - the page must render whatever the stored JSON holds
        return f'<p class="note">This part of the report could not be drawn ({esc(type(exc).__name__)}).</p>'


def render_report_html(report: dict[str, Any], *, title: str) -> str:
    """The report as one self-contained HTML page (see the module docstring)."""
    report = normalized(report)
    sizes = batch_sizes(report)
    env = report.get("environment") or {}
    best = report.get("best_candidate_id")
    body: list[str] = [f"<h1>{esc(title)}</h1>"]
    meta = [f"measured {esc(report['measured_at'])}" if report.get("measured_at") else ""]
    runtime = " ".join(str(x) for x in (env.get("runtime"), env.get("runtime_version")) if x)
    if runtime:
        meta.append(f"{esc(runtime)} on {esc(env.get('device', ''))}")
    if env.get("cpu"):
        meta.append(esc(env["cpu"]))
    meta.append(f"best candidate: <b>{esc(best)}</b>" if best else "no candidate chosen as best")
    body.append(f'<p class="meta">{" · ".join(m for m in meta if m)}</p>')

    for note in report.get("notes") or []:
        body.append(f'<p class="note">{esc(note)}</p>')
    lines = _safe(lambda: "\x00".join(summary_lines(report))).split("\x00")
    if any(lines):
        body.append('<ul class="summary">' + "".join(f"<li>{line}</li>" for line in lines) + "</ul>")
    body.append("<h2>Baseline and candidates</h2>")
    body.append(_safe(models_table, report))
    body.append(
        '<p class="meta">Latency: p50 of interleaved runs with its 95% block-bootstrap interval. Speedup: '
        "baseline p50 / candidate p50 with a paired 95% interval; green when the interval lies above 1, red "
        "below 1. Rows in red are flagged and never chosen as best.</p>"
    )

    if sizes and report.get("candidates"):
        axis = quality_axis(report)
        body.append("<h2>Latency and quality</h2>")
        body.append(
            f"<figure>{_safe(scatter_svg, report, sizes[0])}<figcaption>Each model at batch size {esc(sizes[0])}: p50 latency "
            f"(bars: 95% interval) against {esc(axis.label)}. The dashed red line is the Pareto front: the models "
            "that no other model beats on both. Crossed markers are flagged.</figcaption></figure>"
        )
    if sizes:
        body.append("<h2>Latency distributions</h2>")
        for bs in sizes:
            body.append(f"<h3>Batch size {esc(bs)}</h3><figure>{_safe(distribution_svg, report, bs)}</figure>")

    sections = report["sections"]
    sensitivity = sections.get("sensitivity")
    if sensitivity:
        body.append("<h2>Per-layer sensitivity</h2>")
        body.append(
            f"<figure>{_safe(sensitivity_svg, sensitivity)}<figcaption>{esc(sensitivity.get('metric', 'score'))} per layer, in "
            "graph order; orange layers were kept in float.</figcaption></figure>"
        )
        rows = "".join(
            f"<tr><td>{esc(layer.get('name'))}</td><td>{fmt_float(layer.get('score'), 6)}</td><td>{'yes' if layer.get('kept_float') else ''}</td></tr>"
            for layer in sensitivity["layers"]
        )
        body.append(
            f'<details><summary>all {len(sensitivity["layers"])} layers</summary><table class="kv"><tr><th>layer</th>'
            f"<th>{esc(sensitivity.get('metric', 'score'))}</th><th>kept float</th></tr>{rows}</table></details>"
        )
    others = {k: v for k, v in sections.items() if k != "sensitivity"}
    for name, value in others.items():
        body.append(f"<h3>{esc(name)}</h3><details><summary>details</summary><pre>{esc(json.dumps(value, indent=1, default=str))}</pre></details>")

    if report["steps"]:
        body.append("<h2>Steps</h2>" + kv_table({str(s.get("name", "?")): f"{s.get('seconds', '?')} s" for s in report["steps"]}))
    body.append("<h2>Environment</h2>" + kv_table(env))
    if report.get("config"):
        body.append("<h2>Benchmark settings</h2>" + kv_table(report["config"]))
    if report.get("dataset"):
        body.append("<h2>Dataset</h2>" + kv_table(report["dataset"]))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )
