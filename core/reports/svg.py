"""What every figure is drawn with: ticks and their labels, scales, text."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.reports.format import esc
from core.reports.palette import TEXT_COLOR


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


def padded(lo: float, hi: float, pad: float = 0.08, log: bool = False) -> tuple[float, float]:
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


def text(x: float, y: float, s: str, *, size: int = 11, anchor: str = "start", color: str = TEXT_COLOR, extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{color}"{extra}>{esc(s)}</text>'


def svg_open(width: int, height: int, label: str) -> str:
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{esc(label)}" font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif">'
    )
