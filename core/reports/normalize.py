"""A stored report, coerced into the shape the page draws. Reports come from our engine, but the
page is served from whatever JSON was stored: a part of the wrong type is dropped, never fatal."""

from __future__ import annotations

from typing import Any

from core.reports.format import num


def _dict(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _pair(value: Any) -> list[float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = num(value[0]), num(value[1])
        if lo is not None and hi is not None:
            return [lo, hi]
    return None


def _numbers(value: Any) -> list[float] | None:
    if not isinstance(value, list):
        return None
    out = [num(v) for v in value]
    return None if any(v is None for v in out) else [v for v in out if v is not None]


def _latency(value: Any) -> dict[str, Any]:
    lat = _dict(value)
    out: dict[str, Any] = {k: num(lat.get(k)) for k in ("p50", "p90", "p99", "mean", "min", "max")}
    out["runs"] = num(lat.get("runs"))
    out["p50_ci95"] = _pair(lat.get("p50_ci95"))
    out["quantiles"] = {k: v for k, v in ((k, num(v)) for k, v in _dict(lat.get("quantiles")).items()) if v is not None}
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
        speedup[bs] = {"value": num(item.get("value")), "ci95": _pair(item.get("ci95")), "verdict": str(item.get("verdict") or "")}
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
        if num(layer.get("score")) is not None:
            layers.append({"name": str(layer.get("name", "")), "score": num(layer["score"]), "kept_float": bool(layer.get("kept_float"))})
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
