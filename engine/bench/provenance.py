"""The provenance manifest: what each artifact of a job is and how it was made.

Anyone holding an artifact can check it against the manifest (``sha256sum``), see which input it
came from (the input's sha256), with which recipe (every default resolved as it really ran), on
which library versions and seed, and what the benchmark measured for it.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

MANIFEST_VERSION = 1
# Bulky, plot-only parts of the metrics that the manifest leaves to the report.
_PLOT_ONLY = ("histogram", "quantiles")


def sha256_file(path: Path) -> str:
    """The engine's one file digest (the service hashes in ``core.storage``, which it may import)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def compact_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    out = dict(metrics)
    if "latency_ms" in out:
        out["latency_ms"] = {
            bs: {k: v for k, v in stats.items() if k not in _PLOT_ONLY} for bs, stats in out["latency_ms"].items()
        }
    return out


def build_manifest(
    *,
    job_id: str,
    kind: str,
    input_sha256: str,
    input_format: str,
    reference_sha256: str | None,
    dataset_sha256: str | None,
    dataset_info: dict[str, Any] | None,
    recipe: list[dict[str, Any]],
    benchmark_config: dict[str, Any],
    seed: int,
    libraries: dict[str, str],
    report: dict[str, Any],
    artifacts: list[dict[str, Any]],
    out_dir: Path,
    seconds: float,
) -> dict[str, Any]:
    """``artifacts``: the model files of the job (``path`` relative to ``out_dir``, ``kind``,
    ``format``, ``candidate_id``, ``best``). Each gets its sha256, size, and its candidate's recipe,
    metrics, ratios and flags."""
    candidates = {c["id"]: c for c in report.get("candidates", [])}
    entries = []
    for a in artifacts:
        path = out_dir / a["path"]
        entry: dict[str, Any] = {**a, "sha256": sha256_file(path), "size_bytes": path.stat().st_size}
        cand = candidates.get(a.get("candidate_id") or "")
        if cand is not None:
            entry["recipe"] = cand["recipe"]
            entry["metrics"] = compact_metrics(cand["metrics"])
            entry["ratios"] = cand["ratios"]
            entry["flags"] = cand["flags"]
        entries.append(entry)
    return {
        "manifest_version": MANIFEST_VERSION,
        "job_id": job_id,
        "kind": kind,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "input_sha256": input_sha256,
        "input_format": input_format,
        "reference_sha256": reference_sha256,
        "dataset_sha256": dataset_sha256,
        "dataset": dataset_info,
        "recipe": recipe,
        "benchmark": benchmark_config,
        "seed": seed,
        "libraries": libraries,
        "environment": report.get("environment", {}),
        "artifacts": entries,
        "baseline_metrics": compact_metrics(report["baseline"]) if "baseline" in report else None,
        "metrics": {cid: compact_metrics(c["metrics"]) for cid, c in candidates.items()},
        "best_candidate_id": report.get("best_candidate_id"),
        "seconds": seconds,
        "verify": "sha256sum each artifact and compare with artifacts[].sha256; input_sha256 is the "
        "sha256 of the uploaded model file the recipe was applied to",
    }
