"""What every figure is drawn with: ticks and their labels, scales, text, marks placed by name."""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    """1, 2 and 5 times the powers of ten within [lo, hi]; a range too narrow to hold three of
    them gets evenly spaced round values instead (on a narrow range a log axis is nearly linear)."""
    if lo <= 0 or not hi > lo:
        return [lo]
    ticks = []
    for exp in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            t = m * 10**exp
            if lo <= t <= hi:
                ticks.append(t)
    return ticks if len(ticks) >= 3 else nice_ticks(lo, hi, 6)


def _decimals(x: float) -> int:
    """The fewest decimals that write x (a tick or a step between ticks) without rounding it."""
    for d in range(13):
        if abs(round(x, d) - x) <= abs(x) * 1e-6:
            return d
    return 12


def tick_labels(ticks: Sequence[float], *, log: bool = False) -> list[str]:
    """Labels that tell every tick apart. On a linear axis all ticks get the decimals of the step
    between them, so 0.9999..1 reads 0.99990, 0.99992, ... 1.00000 (never 1, 1, 1, 0.9999); on a
    log axis the steps grow tick by tick, so each tick gets the decimals of its own value (0.5, 1,
    2, 5, 10). Never exponent notation: a reader compares these labels digit by digit."""
    if not ticks:
        return []
    if log:
        places = [_decimals(abs(t)) for t in ticks]
    else:
        steps = [b - a for a, b in zip(ticks, ticks[1:], strict=False) if b > a]
        places = [_decimals(min(steps) if steps else abs(ticks[0]))] * len(ticks)
    for extra in range(13):
        labels = [f"{t:.{p + extra}f}" for t, p in zip(ticks, places, strict=True)]
        labels = [s[1:] if s.startswith("-") and float(s) == 0 else s for s in labels]
        if len(set(labels)) == len(labels):
            return labels
    return labels


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


def placed(mark: str, x: float, y: float, *, name: str) -> str:
    """A mark drawn about (0, 0), placed at (x, y) under a name. A plot and its legend place the
    same markup, so a legend entry is, element for element, the mark it names."""
    return f'<g data-name="{esc(name)}" transform="translate({x:.1f},{y:.1f})">{mark}</g>'
