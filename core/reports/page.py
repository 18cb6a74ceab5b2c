"""A benchmark report as one self-contained HTML page: no scripts, no fonts, no external assets;
the plots are inline SVG drawn here. Standard library only (the API process renders it and never
imports torch, onnx or numpy).

The page: the model and dataset it reports on, a summary sentence per candidate, the table of
baseline vs candidates with ratios and flags, latency against quality with the Pareto front, the
latency distribution of every model at every batch size, per-layer sensitivity when a pass
produced it, the environment, the config.

Everything that comes from the report is escaped: layer names and candidate ids come from user
uploads. A Content-Security-Policy forbids the page to load anything at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from core.reports.distribution import distribution_svg
from core.reports.entries import batch_sizes, quality_axis
from core.reports.format import esc, fmt_float
from core.reports.normalize import normalized
from core.reports.scatter import scatter_svg
from core.reports.search import search_section
from core.reports.sensitivity import sensitivity_svg
from core.reports.tables import kv_table, models_table, summary_lines

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


class Named(Protocol):
    """A stored model or dataset as the page names it (core.models.StoredModel and StoredDataset)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def format(self) -> str: ...


def subject_line(model: Named | None, dataset: Named | None) -> str:
    """What the report is about: the model's name, id and format, the dataset's name and id."""
    bits = []
    if model is not None:
        bits.append(f'model <b>{esc(model.name)}</b> <span class="id">{esc(model.id)} · {esc(model.format)}</span>')
    if dataset is not None:
        bits.append(f'dataset <b>{esc(dataset.name)}</b> <span class="id">{esc(dataset.id)}</span>')
    return f'<p class="subject">{" · ".join(bits)}</p>' if bits else ""


STYLE = """
body{margin:0;background:#ffffff;color:#111827;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px}h3{font-size:15px;margin:18px 0 6px}
.meta{color:#6b7280;font-size:13px}
.subject{margin:2px 0 4px;font-size:15px}.subject .id{color:#6b7280;font-size:12.5px;font-family:ui-monospace,Menlo,monospace}
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


def render_report_html(report: dict[str, Any], *, title: str, model: Named | None = None, dataset: Named | None = None) -> str:
    """The report as one self-contained HTML page (see the module docstring); model and dataset,
    the stored records the job ran on, are named under the title when given."""
    report = normalized(report)
    sizes = batch_sizes(report)
    env = report.get("environment") or {}
    best = report.get("best_candidate_id")
    body: list[str] = [f"<h1>{esc(title)}</h1>", subject_line(model, dataset)]
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
            f"(bars: 95% interval) against {esc(axis.label)}. The dashed red line and the red rings mark the "
            "Pareto front: the models that no other model beats on both. The star marks the best candidate; crossed, hollow "
            "markers are flagged.</figcaption></figure>"
        )
    if report.get("search"):
        body.append(_safe(search_section, report))
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
