"""The HTML report page: self-contained, escaped, light to import, names the model and dataset it
reports on, its plots read true (distinct tick labels, a legend made of the plotted marks,
latency boxes that a slow tail does not squeeze), and they really render (headless Chromium
screenshot, checked pixel by pixel)."""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from core.reports import distribution, palette, render_report_html
from core.reports.distribution import distribution_svg
from core.reports.entries import pareto_front
from core.reports.normalize import normalized
from core.reports.scatter import scatter_svg
from core.reports.svg import log_ticks, nice_ticks, tick_labels

ROOT = Path(__file__).resolve().parents[2]
QUANTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)


def _latency(samples: list[float]) -> dict[str, Any]:
    arr = np.asarray(samples)
    p50 = float(np.percentile(arr, 50))
    return {
        "p50": p50,
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
        "mean": float(arr.mean()),
        "p50_ci95": [p50 * 0.985, p50 * 1.015],
        "runs": len(samples),
        "quantiles": {f"p{q}": float(np.percentile(arr, q)) for q in QUANTILES},
    }


def realistic_report() -> dict[str, Any]:
    """The shape engine.bench.report writes: a baseline, three candidates (faster and good, slower,
    outside the quality bound), two batch sizes, a sensitivity section."""
    rng = random.Random(0)
    specs = {  # id -> (p50 at batch 1 in ms, accuracy, cosine)
        "baseline": (18.0, 0.9420, None),
        "cand_int8": (11.5, 0.9390, 0.9912),
        "cand_slow": (24.0, 0.9415, 0.9990),
        "cand_<script>alert(1)</script>": (8.0, 0.8800, 0.9310),
    }
    samples: dict[str, dict[str, list[float]]] = {}
    for mid, (p50, _, _) in specs.items():
        samples[mid] = {
            bs: [p50 * scale * rng.lognormvariate(0, 0.06) * (3 if rng.random() < 0.02 else 1) for _ in range(400)]
            for bs, scale in (("1", 1.0), ("8", 5.5))
        }
    metrics: dict[str, dict[str, Any]] = {}
    for mid, (_, acc, cos) in specs.items():
        m: dict[str, Any] = {
            "size_bytes": 90_868_000 if mid == "baseline" else 23_000_000,
            "compressed_size_bytes": 83_000_000 if mid == "baseline" else 19_500_000,
            "params": 22_713_216,
            "nonzero_params": 22_713_216,
            "macs": 698_351_616,
            "flops": 1_396_703_232,
            "latency_ms": {},
            "throughput_per_s": {},
            "quality": {"primary": "accuracy", "accuracy": acc, "accuracy_ci95": [acc - 0.01, acc + 0.01], "rows": 2000},
            "memory": {"peak_above_idle_bytes": {"1": 120_000_000, "8": 160_000_000}},
        }
        if cos is not None:
            m["fidelity"] = {"cosine_mean": cos, "cosine_min": cos - 0.02, "max_abs_error": 0.31, "rows": 256}
        for bs in ("1", "8"):
            m["latency_ms"][bs] = _latency(samples[mid][bs])
            m["throughput_per_s"][bs] = int(bs) * 1000 / m["latency_ms"][bs]["p50"]
        metrics[mid] = m
    for bs in ("1", "8"):
        pooled = np.concatenate([samples[mid][bs] for mid in specs])
        lo, hi = np.percentile(pooled, [1, 99])
        edges = np.geomspace(lo, hi, 41)
        for mid in specs:
            counts, _ = np.histogram(np.clip(samples[mid][bs], lo, hi), bins=edges)
            metrics[mid]["latency_ms"][bs]["histogram"] = {"edges": edges.tolist(), "counts": counts.tolist(), "scale": "log"}

    def candidate(mid: str, flags: dict[str, str]) -> dict[str, Any]:
        base = metrics["baseline"]
        m = metrics[mid]
        speedup = {}
        for bs in ("1", "8"):
            value = base["latency_ms"][bs]["p50"] / m["latency_ms"][bs]["p50"]
            verdict = "faster" if value > 1.05 else "slower" if value < 0.95 else "no_significant_difference"
            speedup[bs] = {"value": value, "ci95": [value * 0.97, value * 1.03], "verdict": verdict}
        drop = base["quality"]["accuracy"] - m["quality"]["accuracy"]
        return {
            "id": mid,
            "recipe": [{"op": "quantize", "method": "dynamic", "weight": "int8", "resolved": {"per_channel": True}}],
            "metrics": m,
            "ratios": {
                "speedup": speedup,
                "size": base["size_bytes"] / m["size_bytes"],
                "compressed_size": base["compressed_size_bytes"] / m["compressed_size_bytes"],
                "params": 1.0,
                "nonzero_params": 1.0,
                "macs": 1.0,
                "quality_change": {"metric": "accuracy", "baseline": base["quality"]["accuracy"],
                                   "candidate": m["quality"]["accuracy"], "delta": -drop, "drop": drop,
                                   "delta_ci95": [-drop - 0.004, -drop + 0.004], "higher_is_better": True},
            },
            "flags": list(flags),
            "flag_reasons": flags,
        }

    return {
        "report_version": 1,
        "baseline": metrics["baseline"],
        "candidates": [
            candidate("cand_int8", {}),
            candidate("cand_slow", {"slower_than_baseline": "slower than the baseline at batch size 1, 8"}),
            candidate("cand_<script>alert(1)</script>", {"below_quality_bound": "accuracy worse by 0.062 > 0.01"}),
        ],
        "best_candidate_id": "cand_int8",
        "environment": {"runtime": "onnxruntime", "runtime_version": "1.32.0", "device": "cpu",
                        "providers": ["CPUExecutionProvider"], "threads": 1, "cpu": "AMD EPYC",
                        "cpu_flags": ["avx", "avx2", "fma"], "torch": "2.13.0", "onnxruntime": "1.32.0"},
        "config": {"batch_sizes": [1, 8], "target_ci_half_width": 0.03},
        "sections": {
            "sensitivity": {
                "metric": "cosine",
                "layers": [
                    {"name": f"/encoder/layer.{i // 8}/{['q', 'k', 'v', 'o', 'ffn_in', 'ffn_out', 'x', 'y'][i % 8]}/MatMul",
                     "score": 0.999 - 0.012 * (i % 8 == 5) - 0.001 * rng.random(), "kept_float": i % 8 == 5}
                    for i in range(48)
                ],
            },
            "prune": {"ratio": 0.5, "note": "<b>not html</b>"},
        },
        "measured_at": "2026-11-23T11:00:00Z",
    }


def test_page_is_self_contained_and_escapes_what_users_named() -> None:
    page = render_report_html(realistic_report(), title="Report for job_<1>")
    lowered = page.lower()
    for forbidden in ("<script", "http://", "https://", "src=", "<link", "url(", "@import"):
        assert forbidden not in lowered, forbidden
    assert "cand_&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Report for job_&lt;1&gt;" in page
    assert "&lt;b&gt;not html&lt;/b&gt;" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    # one plot of latency against quality, one distribution per batch size, one sensitivity plot
    assert page.count("<svg") == 4
    assert "Pareto front" in page


def test_flagged_and_best_candidates_are_marked() -> None:
    page = render_report_html(realistic_report(), title="r")
    rows = page.split("<tr class=")[1:]
    by_id = {}
    for row in rows:
        for cid in ("cand_int8", "cand_slow", "cand_&lt;script"):
            if f"<b>{cid}" in row:
                by_id[cid] = row
    assert by_id["cand_int8"].startswith('"best"') and "badge best" in by_id["cand_int8"]
    assert by_id["cand_slow"].startswith('"flagged"') and "slower than baseline" in by_id["cand_slow"]
    assert by_id["cand_&lt;script"].startswith('"flagged"') and "below quality bound" in by_id["cand_&lt;script"]
    assert 'class="speed bad"' in by_id["cand_slow"] and 'class="speed good"' in by_id["cand_int8"]


def test_pareto_front_keeps_only_models_nothing_beats_on_both() -> None:
    points = [("base", 18.0, 0.942), ("int8", 11.5, 0.939), ("slow", 24.0, 0.9415), ("tiny", 8.0, 0.88)]
    assert pareto_front(points) == ["tiny", "int8", "base"]
    # for a lower-is-better metric (MSE) the direction flips
    assert pareto_front([("a", 1.0, 0.5), ("b", 2.0, 0.1), ("c", 3.0, 0.2)], higher_is_better=False) == ["a", "b"]


def test_sparse_reports_render_without_errors() -> None:
    # a benchmark of one model alone: no candidates, no quality, no sections
    alone = {"baseline": {"size_bytes": 1000, "params": 10, "latency_ms": {"1": {"p50": 1.0, "p90": 1.2, "p99": 2.0, "p50_ci95": [0.9, 1.1]}}},
             "candidates": [], "best_candidate_id": None, "environment": {}}
    page = render_report_html(alone, title="alone")
    assert "no candidate chosen as best" in page and page.count("<svg") == 1
    assert "<svg" not in render_report_html({"baseline": {}, "candidates": [], "environment": {}}, title="empty")


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    items = node.items() if isinstance(node, dict) else enumerate(node[:3]) if isinstance(node, list) else []
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_paths(value, (*prefix, key)))
    return out


def test_a_damaged_stored_report_still_renders_every_part() -> None:
    """The page is served from stored JSON: any part of the wrong type or missing is left out,
    and the page renders; no part falls back to its error note."""
    import copy

    original = realistic_report()
    paths = _paths(original)
    rng = random.Random(7)
    for _ in range(300):
        report = copy.deepcopy(original)
        for _ in range(rng.randint(1, 6)):
            path = rng.choice(paths)
            node: Any = report
            try:
                for key in path[:-1]:
                    node = node[key]
                replacement = rng.choice(["delete", None, float("nan"), "x", -1, 0, [], {}])
                if replacement == "delete":
                    del node[path[-1]]
                else:
                    node[path[-1]] = replacement
            except (KeyError, IndexError, TypeError):
                continue
        page = render_report_html(report, title="damaged")
        assert page.startswith("<!DOCTYPE html>") and "could not be drawn" not in page


def test_rendering_never_imports_torch_onnx_or_numpy() -> None:
    code = (
        "import json, sys; from core.reports import render_report_html; "
        f"render_report_html(json.loads({json.dumps(json.dumps(realistic_report()))}), title='t'); "
        "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'numpy', 'transformers') if m in sys.modules); "
        "print(json.dumps(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


# --- what a reader sees: ticks, legend, latency boxes, the model and dataset -------------------


def narrow_quality_report() -> dict[str, Any]:
    """The fixture with no task metric, so quality is the output cosine: 0.99992..1."""
    report = realistic_report()
    report["baseline"]["quality"]["primary"] = None
    for i, cand in enumerate(report["candidates"]):
        cand["metrics"]["fidelity"]["cosine_mean"] = 0.99992 + 0.00002 * i
    return report


def test_tick_labels_tell_every_tick_apart() -> None:
    assert tick_labels(nice_ticks(0.9999, 1.0, 5)) == ["0.99990", "0.99992", "0.99994", "0.99996", "0.99998", "1.00000"]
    assert tick_labels(log_ticks(0.3, 60), log=True) == ["0.5", "1", "2", "5", "10", "20", "50"]
    ranges = [(0.9999, 1.0), (0.99990, 0.99995), (0.0, 1.0), (1000.0, 1003.0), (-0.5, 0.5), (12.0, 12.05), (1e-4, 3e-4), (3.0, 3000.0), (17.2, 19.9)]
    for lo, hi in ranges:
        for log in (False, True):
            if log and lo <= 0:
                continue
            ticks = log_ticks(lo, hi) if log else nice_ticks(lo, hi, 5)
            labels = tick_labels(ticks, log=log)
            assert len(ticks) >= 2 and len(set(labels)) == len(labels) == len(ticks), (lo, hi, log, labels)
            for tick, label in zip(ticks, labels, strict=True):
                decimals = len(label.partition(".")[2])
                assert "e" not in label and abs(float(label) - tick) <= 0.5 * 10**-decimals + 1e-12, (tick, label)


def test_a_narrow_quality_range_gets_distinct_tick_labels() -> None:
    svg = scatter_svg(normalized(narrow_quality_report()), "1")
    quality_labels = re.findall(r'text-anchor="end"[^>]*>([^<]*)</text>', svg)  # the y axis, right-aligned
    assert len(quality_labels) >= 3 and len(set(quality_labels)) == len(quality_labels), quality_labels


def _shape(element: ET.Element) -> tuple:
    """An SVG element as drawn: tag, attributes and children (not the text around it)."""
    return element.tag, tuple(sorted(element.attrib.items())), tuple(_shape(child) for child in element)


def _marks(svg: str) -> tuple[dict[str, list[tuple]], dict[str, list[tuple]], ET.Element]:
    """The named marks of a figure, drawn in the plot and in its legend: name -> [their shapes]."""
    root = ET.fromstring(svg)
    legend = root.find("g[@class='legend']")
    in_legend = {id(g) for g in legend.iter("g")} if legend is not None else set()
    plotted: dict[str, list[tuple]] = {}
    keyed: dict[str, list[tuple]] = {}
    for g in root.iter("g"):
        if "data-name" in g.attrib:
            target = keyed if id(g) in in_legend else plotted
            target.setdefault(g.attrib["data-name"], []).append(tuple(_shape(child) for child in g))
    return plotted, keyed, root


def test_the_legend_shows_the_marks_it_names() -> None:
    report = normalized(realistic_report())
    plotted, keyed, root = _marks(scatter_svg(report, "1"))
    ids = ["baseline", "cand_int8", "cand_slow", "cand_<script>alert(1)</script>"]
    assert set(keyed) == {*ids, "Pareto front", "best", "flagged"}
    assert set(plotted) <= set(keyed), "a kind of mark in the plot has no legend entry"
    for model in ids:  # baseline and each candidate: the very mark of its point
        assert plotted[model] == keyed[model], model
    assert plotted["best"] == keyed["best"]  # the best candidate's star
    [cross] = keyed["flagged"][0]  # flagged: the cross that flagged points (and only they) carry
    for model, flagged in (("baseline", False), ("cand_int8", False), ("cand_slow", True), ("cand_<script>alert(1)</script>", True)):
        assert (cross in plotted[model][0]) == flagged, model
    # the Pareto front: its dashed line and the ring around the points on it
    [(line, ring)] = keyed["Pareto front"]
    assert all(mark == (ring,) for mark in plotted["Pareto front"]) and len(plotted["Pareto front"]) == 3
    front = [p for p in root.iter("path") if p.get("stroke-dasharray")]
    assert [{k: v for k, v in p.attrib.items() if k != "d"} for p in front[:1]] == [{k: v for k, v in line[1] if k != "d"}]

    # the distribution's key: the p99 diamond and the wedge at the edge, shaped as in the lanes
    slow = realistic_report()
    slow["baseline"]["latency_ms"]["1"]["p99"] *= 100
    plotted, _, root = _marks(distribution_svg(normalized(slow), "1"))
    for name in ("p99", "beyond the axis"):
        shapes = {tuple((tag, tuple((k, v) for k, v in attrs if k != "fill"), kids) for tag, attrs, kids in mark) for mark in plotted[name]}
        assert len(plotted[name]) >= 2 and len(shapes) == 1, name  # the key's grey one and the lanes' coloured ones


def _lane_boxes(svg: str) -> list[float]:
    """Widths of the interquartile boxes inside the plot area (the key above it excluded)."""
    plot_top = float(re.search(rf'<rect x="[^"]*" y="([^"]*)"[^>]*fill="{palette.DISTRIBUTION_TINT}"', svg).group(1))
    boxes = re.findall(r'<rect x="[^"]*" y="([^"]*)" width="([^"]*)" height="12" fill="[^"]*" fill-opacity="0.8"', svg)
    return [float(w) for y, w in boxes if float(y) > plot_top]


def test_a_slow_tail_does_not_squeeze_the_latency_boxes() -> None:
    """One model with p99 at 100x its median: the axis stays where the boxes are, the tail is a
    mark at the edge with its value in numbers."""
    steady = _lane_boxes(distribution_svg(normalized(realistic_report()), "1"))
    report = realistic_report()
    latency = report["candidates"][0]["metrics"]["latency_ms"]["1"]
    latency["p99"] = latency["quantiles"]["p99"] = latency["p50"] * 100
    svg = distribution_svg(normalized(report), "1")
    boxes = _lane_boxes(svg)
    assert len(boxes) == 4 and min(boxes) >= 25, boxes  # 12.6 px of 900 when the axis reached the tail
    assert boxes == pytest.approx(steady, abs=0.2)
    assert f"p99 {latency['p99']:.0f} ms" in svg
    # the runs past the axis are counted from the histogram, exactly: bins wholly beyond it
    note = re.search(r"(\d+) runs ≥ ([\d.]+) ms", svg)
    hist = report["baseline"]["latency_ms"]["1"]["histogram"]
    edge = next(e for e in hist["edges"] if f"{e:.1f}" == note.group(2))
    assert int(note.group(1)) == sum(c for e, c in zip(hist["edges"], hist["counts"], strict=False) if e >= edge)
    # a loaded CPU: one model's p95 at 10x its median; its whisker stops at the edge, in numbers
    latency["quantiles"]["p95"] = latency["p50"] * 10
    svg = distribution_svg(normalized(report), "1")
    assert _lane_boxes(svg) == pytest.approx(steady, abs=0.2)
    assert f"p95 {latency['p50'] * 10:.0f} · p99 {latency['p99']:.0f} ms" in svg
    whisker_ends = [float(x) for x in re.findall(r'<line x1="[^"]*" y1="[^"]*" x2="([^"]*)"[^>]*stroke-width="1.5"', svg)]
    assert len(whisker_ends) == 5 and max(whisker_ends) <= distribution.WIDTH - distribution.RIGHT  # 4 lanes, the key


def test_the_page_names_its_model_and_dataset_escaped() -> None:
    model = SimpleNamespace(id="mdl_01", name="bert <base> & co", format="onnx")
    dataset = SimpleNamespace(id="dst_02", name="reviews \"dev\"", format="jsonl")
    page = render_report_html(realistic_report(), title="r", model=model, dataset=dataset)
    assert "bert &lt;base&gt; &amp; co" in page and "<base>" not in page
    assert "mdl_01" in page and "onnx" in page
    assert "reviews &quot;dev&quot;" in page and "dst_02" in page
    assert "dst_02" not in render_report_html(realistic_report(), title="r", model=model)


def test_the_report_route_names_the_jobs_model_and_dataset(db_env: dict[str, str]) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from core.db import session_scope
    from core.models import Artifact, Job, StoredDataset, StoredModel
    from core.storage import get_storage
    from core.tenants import service as tenants

    body = json.dumps(realistic_report()).encode()
    spool = Path(db_env["SHRINK_DATA_DIR"]) / "report.json"
    spool.parent.mkdir(parents=True, exist_ok=True)
    spool.write_bytes(body)
    get_storage().put_file("reports/job_r.json", spool, sha256=hashlib.sha256(body).hexdigest())
    upload = {"size_bytes": 1, "sha256": "0" * 64, "storage_key": "k", "info": {}}
    with session_scope() as s:
        tenant = tenants.create_tenant(s, "acme")
        _, key = tenants.create_api_key(s, tenant.id)
        s.add(StoredModel(id="mdl_r", tenant_id=tenant.id, name="resnet <50>", format="onnx", **upload))
        s.add(StoredDataset(id="dst_r", tenant_id=tenant.id, name="imagenet-val", format="imagefolder", **upload))
        s.flush()
        s.add(Job(id="job_r", tenant_id=tenant.id, model_id="mdl_r", dataset_id="dst_r", state="succeeded"))
        s.flush()
        s.add(Artifact(id="art_r", tenant_id=tenant.id, job_id="job_r", kind="report", format="json", filename="report.json",
                       size_bytes=len(body), sha256=hashlib.sha256(body).hexdigest(), storage_key="reports/job_r.json"))
    client = TestClient(create_app())
    page = client.get("/v1/jobs/job_r/report?format=html", headers={"Authorization": f"Bearer {key}"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "resnet &lt;50&gt;" in page.text and "mdl_r" in page.text and "imagenet-val" in page.text and "dst_r" in page.text


# --- the page in a real browser --------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "headless Chromium is needed for this test: apt-get install -y chromium"
    return found


def screenshot(page: Path, png: Path, profile: Path, *, height: int) -> None:
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png}",
        f"--window-size=1280,{height}", page.as_uri(),
    ]  # fmt: skip
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert png.is_file() and png.stat().st_size > 10_000, "Chromium wrote no screenshot"


def _hex(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)


def plot_regions(pixels: np.ndarray, tint: str) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (top, bottom, left, right) of the areas painted in a plot's own tint;
    areas further apart than a few rows are separate plots."""
    mask = (np.abs(pixels - _hex(tint)) <= 2).all(axis=2)
    rows = np.flatnonzero(mask.sum(axis=1) >= 40)
    regions = []
    if not len(rows):
        return regions
    start = prev = rows[0]
    for r in [*rows[1:], rows[-1] + 1000]:
        if r - prev > 12:
            cols = np.flatnonzero(mask[start : prev + 1].any(axis=0))
            regions.append((int(start), int(prev), int(cols.min()), int(cols.max())))
            start = r
        prev = r
    return regions


def colored_ink(region: np.ndarray) -> np.ndarray:
    """Pixels that are clearly coloured (data marks); background, grid, axes and text are grey."""
    return (region.max(axis=2) - region.min(axis=2)) > 60


def near(region: np.ndarray, color: str, tolerance: int = 40) -> int:
    return int((np.abs(region - _hex(color)) <= tolerance).all(axis=2).sum())


def test_page_renders_its_plots_in_headless_chromium(tmp_path: Path) -> None:
    from PIL import Image

    page = tmp_path / "report.html"
    page.write_text(render_report_html(realistic_report(), title="Report job_123"))
    png = tmp_path / "report.png"
    screenshot(page, png, tmp_path / "profile", height=3400)
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    assert pixels.shape[1] == 1280

    scatter = plot_regions(pixels, palette.SCATTER_TINT)
    distributions = plot_regions(pixels, palette.DISTRIBUTION_TINT)
    sensitivity = plot_regions(pixels, palette.SENSITIVITY_TINT)
    assert len(scatter) == 1, scatter
    assert len(distributions) == 2, distributions  # batch sizes 1 and 8
    assert len(sensitivity) == 1, sensitivity

    for top, bottom, left, right in scatter + distributions + sensitivity:
        assert bottom - top > 80 and right - left > 300, "a plot area is too small to hold a plot"
        region = pixels[top : bottom + 1, left : right + 1]
        ink = colored_ink(region)
        assert ink.sum() > 400, "a plot area shows no data marks"
    top, bottom, left, right = scatter[0]
    region = pixels[top : bottom + 1, left : right + 1]
    assert near(region, palette.PARETO_COLOR) > 60, "no Pareto front drawn"
    for color in palette.CANDIDATE_COLORS[:3]:
        assert near(region, color, 30) > 30, f"no marker of colour {color}"
    for top, bottom, left, right in distributions:
        region = pixels[top : bottom + 1, left : right + 1]
        assert sum(near(region, c, 30) > 50 for c in palette.CANDIDATE_COLORS[:3]) == 3, "a model's distribution is missing"
    top, bottom, left, right = sensitivity[0]
    region = pixels[top : bottom + 1, left : right + 1]
    assert near(region, palette.QUANTIZED_COLOR, 20) > 500
    assert near(region, palette.KEPT_FLOAT_COLOR, 20) > 100
    # the table marks the flagged rows in red: some of the page's pixels are that background
    assert near(pixels, "#fef2f2", 2) > 2000


if __name__ == "__main__":  # pragma: no cover - render the fixture to look at it
    sys.exit(pytest.main([__file__, "-q"]))
