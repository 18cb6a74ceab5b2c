"""The statistics under the benchmark: intervals that hold on a noisy machine, a stopping rule that
stops for the reason it says, distributions a page can overlay."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.bench import fidelity, latency


def bursty_latencies(n: int, rng: np.random.Generator) -> np.ndarray:
    """Runs on a shared machine: spells of ~10 slow rounds (1.6x) about a quarter of the time."""
    fast = rng.geometric(0.03, size=n)
    slow = rng.geometric(0.10, size=n)
    scale = np.repeat(np.tile([1.0, 1.6], n), np.column_stack([fast, slow]).ravel())
    start = rng.integers(0, 50)
    return scale[start : start + n] * rng.lognormal(0, 0.05, size=n)


def iid_bootstrap_ci(samples: np.ndarray, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    stats = np.median(samples[rng.integers(0, len(samples), (1000, len(samples)))], axis=1)
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def test_block_bootstrap_interval_holds_the_median_under_bursty_load() -> None:
    true_median = float(np.median(bursty_latencies(400_000, np.random.default_rng(99))))
    rng = np.random.default_rng(5)
    trials = 200
    block_hits = iid_hits = 0
    for seed in range(trials):
        samples = bursty_latencies(150, rng)
        lo, hi = latency.bootstrap_ci(samples, seed=seed)
        block_hits += lo <= true_median <= hi
        lo, hi = iid_bootstrap_ci(samples, seed)
        iid_hits += lo <= true_median <= hi
    assert block_hits / trials >= 0.78
    assert block_hits / trials >= iid_hits / trials + 0.15


def test_bootstrap_interval_holds_the_median_of_quiet_runs() -> None:
    rng = np.random.default_rng(1)
    hits = sum(
        lo <= 10.0 <= hi
        for lo, hi in (latency.bootstrap_ci(10.0 * rng.lognormal(0, 0.1, 150), seed=k) for k in range(200))
    )
    assert hits / 200 >= 0.85


def test_paired_speedup_interval_cancels_drift_shared_by_both_models() -> None:
    rng = np.random.default_rng(2)
    drift = np.repeat(rng.uniform(1.0, 3.0, size=20), 10)  # the machine's speed changes every 10 rounds
    base = 2.0 * drift * rng.lognormal(0, 0.02, size=200)
    cand = 1.0 * drift * rng.lognormal(0, 0.02, size=200)
    result = latency.speedup(base, cand)
    lo, hi = result["ci95"]
    assert lo < 2.0 < hi and hi - lo < 0.3
    assert result["verdict"] == "faster"
    same = latency.speedup(cand * rng.lognormal(0, 0.02, size=200), cand)
    assert same["ci95"][0] < 1.0 < same["ci95"][1] and same["verdict"] == "no_significant_difference"
    assert latency.speedup(cand, base)["verdict"] == "slower"


class SleepRunner:
    inputs: list = []

    def __init__(self, seconds: float):
        self.seconds = seconds

    def run(self, feeds: dict) -> list:
        time.sleep(self.seconds)
        return []

    def describe(self) -> dict:
        return {"runtime": "sleep"}


def test_timing_stops_for_the_reason_it_reports() -> None:
    runners = [SleepRunner(0.001), SleepRunner(0.001)]
    common = {"warmup_runs": 2, "min_runs": 10, "feeds": [{}]}
    loose = latency.measure_interleaved(runners, **common, max_runs=5000, time_budget_seconds=30, target_ci_half_width=0.5)
    assert loose.stopped_by == "target_ci" and len(loose.samples[0]) < 5000
    budget = latency.measure_interleaved(runners, **common, max_runs=100_000, time_budget_seconds=0.4, target_ci_half_width=1e-9)
    assert budget.stopped_by == "time_budget" and 0.4 <= budget.seconds < 3.0
    capped = latency.measure_interleaved(runners, **common, max_runs=15, time_budget_seconds=30, target_ci_half_width=1e-9)
    assert capped.stopped_by == "max_runs" and [len(s) for s in capped.samples] == [15, 15]


def test_histograms_share_log_edges_and_count_every_run() -> None:
    rng = np.random.default_rng(3)
    fast, slow = rng.lognormal(0, 0.05, 300), 2 * rng.lognormal(0, 0.05, 300)
    slow[:5] = 50.0  # a tail far out: counted in the last bin, not stretching the axis
    hists = latency.histograms([fast, slow])
    assert hists[0]["edges"] == hists[1]["edges"]
    edges = np.asarray(hists[0]["edges"])
    assert edges[-1] < 5 and np.allclose(np.diff(np.log(edges)), np.diff(np.log(edges))[0], rtol=1e-3)
    assert sum(hists[0]["counts"]) == 300 and sum(hists[1]["counts"]) == 300
    summary = latency.summarize(slow)
    assert summary["p50_ci95"][0] <= summary["p50"] <= summary["p50_ci95"][1]
    assert summary["quantiles"]["p99"] == summary["p99"] and summary["runs"] == 300


def test_task_metrics_fit_the_outputs() -> None:
    labels = np.array([0, 1, 2, 2, 1, 0, 3, 4, 5, 6])
    logits = np.eye(7)[labels] * 5.0
    logits[0] = np.eye(7)[1] * 5.0  # one mistake
    q = fidelity.task_quality([[logits]], labels)
    assert q["accuracy"] == 0.9 and q["top5_accuracy"] == 1.0 and 0 < q["f1_macro"] < 1
    assert q["accuracy_ci95"][0] < 0.9 < q["accuracy_ci95"][1]
    worse = logits.copy()
    worse[1] = np.eye(7)[0] * 5.0
    change = fidelity.quality_change(q, fidelity.task_quality([[worse]], labels))
    assert change is not None
    assert change["metric"] == "accuracy" and abs(change["drop"] - 0.1) < 1e-9 and change["rows_changed"] == 1
    regression = fidelity.task_quality([[np.array([[1.0], [2.0]])]], np.array([1.5, 2.0]))
    assert regression["primary"] == "mse" and regression["mse"] == 0.125
    binary = fidelity.task_quality([[np.array([0.9, 0.2, 0.7])]], np.array([1, 0, 0]))
    assert binary["accuracy"] == 2 / 3 and binary["f1"] == 2 / 3


def test_fidelity_of_per_token_outputs_ignores_padding_positions() -> None:
    """Padding positions are computed but never used; noise there must not count, noise on a real
    token must."""
    from engine.bench.fidelity import compare, padding_masks

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(2, 8, 4))
    mask = np.array([[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0]])
    noisy_padding = reference.copy()
    noisy_padding[mask == 0] += rng.normal(scale=10.0, size=noisy_padding[mask == 0].shape)
    feeds = [{"input_ids": np.zeros_like(mask), "attention_mask": mask}]
    masked = compare([[reference]], [[noisy_padding]], padding_masks(feeds))
    assert masked["cosine_min"] == pytest.approx(1.0) and masked["max_abs_error"] == 0.0
    assert compare([[reference]], [[noisy_padding]])["cosine_min"] < 0.5  # unmasked: it counts
    noisy_token = reference.copy()
    noisy_token[0, 1] += 10.0
    assert compare([[reference]], [[noisy_token]], padding_masks(feeds))["cosine_min"] < 0.9
    # Outputs that are not per token (pooled, logits) are compared whole.
    pooled = compare([[reference[:, 0]]], [[noisy_padding[:, 0]]], padding_masks(feeds))
    assert pooled["cosine_min"] == pytest.approx(1.0)
