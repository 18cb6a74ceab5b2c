"""The tables and sentences of the page: one summary sentence per candidate, the table of baseline
and candidates with ratios and flags, key-value tables for the environment and the settings."""

from __future__ import annotations

import json
from typing import Any

from core.reports.entries import Entry, batch_sizes, entries
from core.reports.format import esc, fmt_bytes, fmt_count, fmt_float, fmt_ms, fmt_ratio, get, num


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
    change = get(e.candidate, "ratios", "quality_change")
    if change:
        delta = num(change.get("delta"))
        ci = change.get("delta_ci95")
        sign = "+" if (delta or 0) >= 0 else ""
        cls = "bad" if (num(change.get("drop")) or 0) > 0 else "good"
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
    of = str(f.get("cosine_of") or "output")
    pooled = f" of the {esc(of.removesuffix('_pooled'))}-pooled embedding" if of.endswith("_pooled") else ""
    return (
        f"<td>cos{pooled} {fmt_float(f.get('cosine_mean'), 5)} (min {fmt_float(f.get('cosine_min'), 4)})"
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
        mem = get(m, "memory", "peak_above_idle_bytes", largest) if largest else None
        mem_text = fmt_bytes(mem) + (f'<div class="ci">batch {esc(largest)}, above idle</div>' if mem is not None else "")
        if get(m, "memory", "error"):
            mem_text = f'<span title="{esc(m["memory"]["error"])}">not measured</span>'
        cells.append(f"<td>{mem_text}</td>")
        for bs in sizes:
            lat = get(m, "latency_ms", bs) or {}
            ci = lat.get("p50_ci95") or [None, None]
            cell = f"{fmt_ms(lat.get('p50'))} <span class=\"ci\">[{fmt_ms(ci[0])}, {fmt_ms(ci[1])}] · p99 {fmt_ms(lat.get('p99'))}</span>"
            cell += _speedup_html(get(r, "speedup", bs)) if e.candidate else '<div class="speed same">1×</div>'
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
        cos = get(e.metrics, "fidelity", "cosine_mean")
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
