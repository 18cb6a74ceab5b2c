"""Numbers, sizes and names as people read them, and the one escape for everything a report holds."""

from __future__ import annotations

import html
import math
from typing import Any


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(value: Any) -> float | None:
    """A finite number, or None for anything else (bools, strings, NaN, infinities)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


def get(d: Any, *keys: Any) -> Any:
    """d[k1][k2]..., or None where a level is missing or not a dict."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def short(s: str, n: int) -> str:
    """At most n characters, keeping the end (where layer paths and candidate ids differ)."""
    return s if len(s) <= n else "…" + s[-(n - 1) :]


def fmt_bytes(value: Any) -> str:
    v = num(value)
    if v is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(v) < 1000 or unit == "TB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.3g} {unit}"
        v /= 1000
    return "—"


def fmt_count(value: Any) -> str:
    v = num(value)
    if v is None:
        return "—"
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.3g}{unit}"
    return f"{v:.0f}"


def fmt_ms(value: Any) -> str:
    v = num(value)
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
    v = num(value)
    return "—" if v is None else f"{v:.2f}×"


def fmt_float(value: Any, digits: int = 4) -> str:
    v = num(value)
    return "—" if v is None else f"{v:.{digits}g}"
