"""Speed measured on real models, robust to a shared, noisy machine: a model that does exactly half
the work measures faster with an interval that excludes 1; two copies of one model measure an
interval that contains 1; a slower candidate is flagged and never chosen."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bench import materials
from engine.bench import memory
from engine.bench.config import BenchmarkConfig
from engine.bench.report import CandidateInput, benchmark_models, choose_best
from engine.model import ModelFile


def chain_onnx(path: Path, *, depth: int, width: int = 256, seed: int = 0) -> ModelFile:
    """``depth`` x (MatMul [width x width] + Relu): a model with exactly ``depth`` units of work.
    The Relu between the MatMuls keeps any runtime from folding two weights into one."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    current = "x"
    for i in range(depth):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"]))
        out = "y" if i == depth - 1 else f"r{i}"
        nodes.append(helper.make_node("Relu", [f"m{i}"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        f"chain{depth}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return ModelFile(path=path, format="onnx")


def config(**overrides: object) -> BenchmarkConfig:
    # One thread per model: on a machine shared with other jobs, a second thread only adds noise.
    base = {"threads": 1, "batch_sizes": [16], "measure_memory": False, "fidelity_rows": 32, "time_budget_seconds": 4.0}
    return BenchmarkConfig.model_validate({**base, **overrides})


def test_a_model_doing_half_the_work_measures_faster_with_an_interval_above_one(tmp_path: Path) -> None:
    heavy = chain_onnx(tmp_path / "heavy" / "model.onnx", depth=16)
    light = chain_onnx(tmp_path / "light" / "model.onnx", depth=8)
    report = benchmark_models(heavy, [CandidateInput("half", light)], dataset=None, config=config())
    cand = report["candidates"][0]
    speed = cand["ratios"]["speedup"]["16"]
    assert speed["ci95"][0] > 1.0, speed
    assert speed["verdict"] == "faster"
    assert 1.3 < speed["value"] < 3.0, speed  # twice the work; runtime overheads make it a bit less
    # the static counts are exact
    assert cand["ratios"]["macs"] == pytest.approx(2.0)
    assert cand["ratios"]["params"] == pytest.approx(2.0)
    assert report["baseline"]["macs"] == 16 * 256 * 256
    assert cand["flags"] == [] and choose_best(report) == "half"
    assert cand["metrics"]["throughput_per_s"]["16"] > report["baseline"]["throughput_per_s"]["16"]


def test_two_copies_of_one_model_measure_a_speedup_interval_containing_one(tmp_path: Path) -> None:
    """A 95% interval misses the truth one time in twenty by design, so one run proves little either
    way. Five runs: an honest interval contains 1 in at least three of them but 0.1% of the time,
    while a biased one (the first model in a round always faster, say) fails most runs."""
    original = materials.digits_cnn_onnx()
    copy = tmp_path / "copy" / "model.onnx"
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    speeds = []
    for _ in range(5):
        report = benchmark_models(
            ModelFile(path=original, format="onnx"),
            [CandidateInput("same", ModelFile(path=copy, format="onnx"))],
            dataset=None,
            config=config(batch_sizes=[32], time_budget_seconds=2.0),
        )
        cand = report["candidates"][0]
        speeds.append(cand["ratios"]["speedup"]["32"])
        assert cand["metrics"]["fidelity"]["max_abs_error"] == 0.0
        assert cand["metrics"]["fidelity"]["top1_agreement"] == 1.0
        base = report["baseline"]["latency_ms"]["32"]
        assert base["p50_ci95"][0] <= base["p50"] <= base["p50_ci95"][1]
        assert base["runs"] == cand["metrics"]["latency_ms"]["32"]["runs"] >= 20
    containing = [s for s in speeds if s["ci95"][0] <= 1.0 <= s["ci95"][1]]
    assert len(containing) >= 3, speeds
    assert all(s["verdict"] == "no_significant_difference" for s in containing)
    assert 0.95 < float(np.median([s["value"] for s in speeds])) < 1.05, speeds


def test_a_slower_candidate_is_flagged_and_never_chosen(tmp_path: Path) -> None:
    light = chain_onnx(tmp_path / "light" / "model.onnx", depth=6)
    heavy = chain_onnx(tmp_path / "heavy" / "model.onnx", depth=12)
    report = benchmark_models(light, [CandidateInput("double", heavy)], dataset=None, config=config(time_budget_seconds=3.0))
    cand = report["candidates"][0]
    assert cand["ratios"]["speedup"]["16"]["ci95"][1] < 1.0
    assert cand["flags"] == ["slower_than_baseline"]
    assert "batch size 16" in cand["flag_reasons"]["slower_than_baseline"]
    assert choose_best(report) is None


def test_peak_memory_is_measured_per_model_in_its_own_process(tmp_path: Path) -> None:
    # 16 x 4 MiB of weights against 2 x 4 MiB: the big one must cost ~56 MiB more to run.
    big = chain_onnx(tmp_path / "big" / "model.onnx", depth=16, width=1024)
    small = chain_onnx(tmp_path / "small" / "model.onnx", depth=2, width=1024)
    feeds = {bs: {"x": np.ones((bs, 1024), dtype=np.float32)} for bs in (1, 64)}
    results = {
        name: memory.measure_peak_memory(model, feeds, runtime=None, device="cpu", threads=1)
        for name, model in (("big", big), ("small", small))
    }
    for result in results.values():
        assert "error" not in result, result
        assert result["peak_rss_bytes"]["64"] >= result["peak_rss_bytes"]["1"] >= result["loaded_rss_bytes"]
    extra = results["big"]["peak_above_idle_bytes"]["64"] - results["small"]["peak_above_idle_bytes"]["64"]
    assert 40 * 2**20 < extra < 200 * 2**20, extra


def test_timed_runners_do_not_spin_between_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each onnxruntime session's idle workers spin after a run; interleaved, they took the cores
    the next model needed (docs/benchmarks.md, "How timing works"). The runner's session stops its
    workers' spinning when a run returns (and keeps it during the run, as a serving process
    does), and says so; other sessions keep onnxruntime's defaults."""
    import onnxruntime as ort

    from engine.bench.runners import OnnxRunner
    from engine.formats import onnx_model

    def entry(opts, key: str) -> str | None:
        try:
            return opts.get_session_config_entry(key)
        except Exception:
            return None  # not set: onnxruntime's default

    seen: list[tuple[str | None, str | None]] = []
    real = ort.InferenceSession

    def spy(path, sess_options=None, **kwargs):
        seen.append((entry(sess_options, "session.force_spinning_stop"), entry(sess_options, "session.intra_op.allow_spinning")))
        return real(path, sess_options=sess_options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    model = chain_onnx(tmp_path / "chain.onnx", depth=2)
    runner = OnnxRunner(model, threads=2)
    onnx_model.session(model.path)
    assert seen == [("1", None), (None, None)]
    assert runner.describe()["thread_spinning"] == "during a run only"
    assert runner.run({"x": np.ones((2, 256), dtype=np.float32)})[0].shape == (2, 256)
