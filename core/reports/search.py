"""A goal job's search on the report page: every candidate it evaluated (quality drop against the
objective's gain, with the bound and the Pareto front), the best objective found over time, why
the best was chosen, and which rows served what."""

from __future__ import annotations

from typing import Any

from core.reports.format import esc, fmt_float
from core.reports.palette import (
    AXIS_COLOR,
    BEST_FILL,
    BEST_STROKE,
    FLAG_COLOR,
    GRID_COLOR,
    MUTED_COLOR,
    PARETO_COLOR,
    QUANTIZED_COLOR,
    SCATTER_TINT,
)
from core.reports.svg import Scale, nice_ticks, padded, svg_open, text, tick_labels

WIDTH, HEIGHT = 760, 360
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 20, 50


def _measured(search: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in search.get("candidates", []) if c.get("state") == "complete" and c.get("gain") is not None and c.get("drop") is not None]


def _frame(xs: Scale, ys: Scale, x_label: str, y_label: str, label: str) -> list[str]:
    out = [svg_open(WIDTH, HEIGHT, label),
           f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" fill="{SCATTER_TINT}"/>']
    xt, yt = nice_ticks(xs.lo, xs.hi), nice_ticks(ys.lo, ys.hi)
    for t, s in zip(xt, tick_labels(xt), strict=True):
        out.append(f'<line x1="{xs(t):.1f}" x2="{xs(t):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="{GRID_COLOR}"/>')
        out.append(text(xs(t), HEIGHT - BOTTOM + 16, s, anchor="middle"))
    for t, s in zip(yt, tick_labels(yt), strict=True):
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ys(t):.1f}" y2="{ys(t):.1f}" stroke="{GRID_COLOR}"/>')
        out.append(text(LEFT - 6, ys(t) + 4, s, anchor="end"))
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}" stroke="{AXIS_COLOR}"/>')
    out.append(text((LEFT + WIDTH - RIGHT) / 2, HEIGHT - 12, x_label, anchor="middle"))
    out.append(text(16, (TOP + HEIGHT - BOTTOM) / 2, y_label, anchor="middle",
                    extra=f' transform="rotate(-90 16 {(TOP + HEIGHT - BOTTOM) / 2:.1f})"'))
    return out


def candidates_svg(search: dict[str, Any], best: str | None) -> str:
    """Every measured candidate: quality drop (x) against gain (y); the bound as a vertical line."""
    goal = search["goal"]
    points = _measured(search)
    if not points:
        return '<p class="note">No candidate of the search could be measured.</p>'
    drops = [float(c["drop"]) for c in points] + [float(goal["max_drop"]), 0.0]
    gains = [float(c["gain"]) for c in points] + [1.0]
    xs = Scale(*padded(min(drops), max(drops)), LEFT, WIDTH - RIGHT)
    ys = Scale(*padded(min(gains), max(gains)), HEIGHT - BOTTOM, TOP)
    out = _frame(xs, ys, f"{goal['metric']} drop on the selection rows (lower is better)",
                 f"{goal['objective']} gain over the original (x)", "every candidate of the search")
    bound = xs(float(goal["max_drop"]))
    out.append(f'<line x1="{bound:.1f}" x2="{bound:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="{FLAG_COLOR}" stroke-dasharray="5 4"/>')
    out.append(text(bound + 4, TOP + 12, f"bound {goal['max_drop']}", color=FLAG_COLOR))
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ys(1.0):.1f}" y2="{ys(1.0):.1f}" stroke="{MUTED_COLOR}" stroke-dasharray="2 3"/>')
    front = sorted((c for c in points if c["id"] in set(search.get("pareto_front", []))), key=lambda c: float(c["drop"]))
    if len(front) > 1:
        path = " ".join(f"{xs(float(c['drop'])):.1f},{ys(float(c['gain'])):.1f}" for c in front)
        out.append(f'<polyline points="{path}" fill="none" stroke="{PARETO_COLOR}" stroke-width="2" stroke-dasharray="7 4"/>')
    for c in points:
        x, y = xs(float(c["drop"])), ys(float(c["gain"]))
        inside = float(c["drop"]) <= float(goal["max_drop"])
        color = QUANTIZED_COLOR if inside else FLAG_COLOR
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{color if inside else "#ffffff"}" stroke="{color}" stroke-width="2">'
                   f'<title>{esc(c["id"])}: {fmt_float(c["gain"], 3)}x, drop {fmt_float(c["drop"], 4)}</title></circle>')
        if c["id"] == best:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="10" fill="none" stroke="{BEST_STROKE}" stroke-width="2"/>')
            out.append(f'<circle cx="{x:.1f}" cy="{y - 16:.1f}" r="5" fill="{BEST_FILL}" stroke="{BEST_STROKE}"/>')
    out.append("</svg>")
    return "".join(out)


def progress_svg(search: dict[str, Any]) -> str:
    """The best gain within the bound, over the search's time: a step line."""
    goal = search["goal"]
    points = sorted(_measured(search), key=lambda c: float(c.get("elapsed_seconds") or 0))
    if not points:
        return ""
    times = [float(c.get("elapsed_seconds") or 0) for c in points]
    xs = Scale(*padded(0.0, max(times + [1.0])), LEFT, WIDTH - RIGHT)
    ys = Scale(*padded(min([1.0] + [float(c["gain"]) for c in points]), max(float(c["gain"]) for c in points)), HEIGHT - BOTTOM, TOP)
    out = _frame(xs, ys, "search time (s)", f"{goal['objective']} gain (x)", "best objective over time")
    best: float | None = None
    steps: list[tuple[float, float]] = []
    for c, t in zip(points, times, strict=True):
        inside = float(c["drop"]) <= float(goal["max_drop"])
        out.append(f'<circle cx="{xs(t):.1f}" cy="{ys(float(c["gain"])):.1f}" r="3.5" fill="{QUANTIZED_COLOR if inside else AXIS_COLOR}"/>')
        if inside and (best is None or float(c["gain"]) > best):
            best = float(c["gain"])
            steps.append((t, best))
    if steps:
        path, last = [], None
        for t, g in steps:
            if last is not None:
                path.append(f"{xs(t):.1f},{ys(last):.1f}")
            path.append(f"{xs(t):.1f},{ys(g):.1f}")
            last = g
        path.append(f"{xs(max(times)):.1f},{ys(steps[-1][1]):.1f}")
        out.append(f'<polyline points="{" ".join(path)}" fill="none" stroke="{BEST_STROKE}" stroke-width="2.5"/>')
    out.append("</svg>")
    return "".join(out)


def _recipe(steps: list[dict[str, Any]]) -> str:
    return " → ".join(f"{s.get('op')}.{s.get('method')}" for s in steps or []) or "—"


def _rows(value: Any) -> str:
    return value if isinstance(value, str) else f"{value.get('rows')} rows of {value.get('source')}"


def search_section(report: dict[str, Any]) -> str:
    search = report["search"]
    goal = search["goal"]
    best = report.get("best_candidate_id")
    why = (search.get("why") or {}).get("text", "")
    parts = [
        "<h2>Search</h2>",
        f'<p>Goal: the best {esc(goal["objective"])} at batch size {esc(goal["batch_size"])} with {esc(goal["metric"])} at most '
        f'{esc(goal["max_drop"])} below the original, within {esc(goal["budget_minutes"])} minutes, combining '
        f'{esc(", ".join(goal["methods"]))}. {len(search.get("candidates", []))} candidates in {float(search.get("seconds") or 0):.0f} s; '
        f'goal {"met" if search.get("goal_met") else "not met"}.</p>',
        f'<p class="{"summary" if best else "note"}">{esc(why)}</p>',
        f"<figure>{candidates_svg(search, best)}<figcaption>Every candidate measured during the search, on the selection rows: "
        "filled within the quality bound (dashed red line), hollow beyond it; the dashed red polyline is the Pareto front, the ringed "
        "point with a yellow dot the best. The dotted line is the original's speed.</figcaption></figure>",
        f"<figure>{progress_svg(search)}<figcaption>The best gain within the bound found so far, over the search's time.</figcaption></figure>",
        "<h3>Which rows served what</h3>",
        '<table class="kv">' + "".join(
            f"<tr><th>{esc(name.replace('_', ' '))}</th><td>{esc(_rows(value))}</td></tr>" for name, value in (search.get("rows") or {}).items()
        ) + "</table>",
        "<h3>Every candidate</h3>",
        '<div class="scroll"><table class="models"><tr><th>candidate</th><th>recipe</th><th>gain</th><th>drop</th><th>seconds</th><th>flags</th></tr>',
    ]
    for c in search.get("candidates", []):
        flags = " ".join(f'<span class="badge flag">{esc(f)}</span>' for f in c.get("flags", []))
        if c["id"] == best:
            flags = '<span class="badge best">best</span>' + flags
        error = f' <span class="ci">{esc((c.get("error") or {}).get("message", ""))}</span>' if c.get("error") else ""
        parts.append(f'<tr><td>{esc(c["id"])}</td><td class="recipe">{esc(_recipe(c.get("recipe", [])))}</td>'
                     f'<td>{fmt_float(c.get("gain"), 3)}</td><td>{fmt_float(c.get("drop"), 4)}</td>'
                     f'<td>{fmt_float(c.get("seconds"), 1)}</td><td>{flags}{error}</td></tr>')
    parts.append("</table></div>")
    return "".join(parts)
