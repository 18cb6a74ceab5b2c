"""Per-layer sensitivity as bars, layers in graph order; layers kept in float stand out."""

from __future__ import annotations

from typing import Any

from core.reports.format import esc, num, short
from core.reports.palette import GRID_COLOR, KEPT_FLOAT_COLOR, QUANTIZED_COLOR, SENSITIVITY_TINT
from core.reports.svg import Scale, nice_ticks, padded, svg_open, text, tick_labels


def sensitivity_svg(section: dict[str, Any]) -> str:
    layers = [layer for layer in section.get("layers") or [] if num(layer.get("score")) is not None]
    metric = str(section.get("metric") or "score")
    width, height = 1100, 380 if len(layers) <= 40 else 300
    left, right, top = 70, 20, 30
    bottom = 110 if len(layers) <= 40 else 40
    parts = [svg_open(width, height, f"per-layer sensitivity ({metric})")]
    parts.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="{SENSITIVITY_TINT}"/>')
    if not layers:
        return "".join(parts) + "</svg>"
    scores = [float(layer["score"]) for layer in layers]
    lo, hi = min(scores), max(scores)
    ylo, yhi = padded(lo, hi, 0.1)
    if lo >= 0 and lo - (hi - lo) * 2 <= 0:
        ylo = 0.0  # start at zero when the bars would not lose their contrast
    sy = Scale(ylo, yhi, height - bottom, top)
    ticks = nice_ticks(ylo, yhi, 5)
    for t, label in zip(ticks, tick_labels(ticks), strict=True):
        py = sy(t)
        parts.append(f'<line x1="{left}" y1="{py:.1f}" x2="{width - right}" y2="{py:.1f}" stroke="{GRID_COLOR}"/>')
        parts.append(text(left - 6, py + 4, label, anchor="end"))
    slot = (width - left - right) / len(layers)
    bar = max(1.0, slot * 0.75)
    for i, layer in enumerate(layers):
        x = left + i * slot + (slot - bar) / 2
        y = sy(float(layer["score"]))
        color = KEPT_FLOAT_COLOR if layer.get("kept_float") else QUANTIZED_COLOR
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(1.0, height - bottom - y):.1f}" fill="{color}"><title>{esc(layer.get("name"))}: {esc(layer.get("score"))}</title></rect>')
        if len(layers) <= 40:
            cx, cy = x + bar / 2, height - bottom + 8
            parts.append(text(cx, cy, short(str(layer.get("name", "")), 18), size=9, anchor="end", extra=f' transform="rotate(-55 {cx:.1f} {cy:.1f})"'))
    mid_y = (top + height - bottom) / 2
    parts.append(text(14, mid_y, metric, anchor="middle", extra=f' transform="rotate(-90 14 {mid_y:.1f})"'))
    lx = width - right - 260
    parts.append(f'<rect x="{lx}" y="8" width="12" height="12" fill="{QUANTIZED_COLOR}"/>')
    parts.append(text(lx + 18, 18, "quantized"))
    parts.append(f'<rect x="{lx + 100}" y="8" width="12" height="12" fill="{KEPT_FLOAT_COLOR}"/>')
    parts.append(text(lx + 118, 18, "kept in float"))
    return "".join(parts) + "</svg>"
