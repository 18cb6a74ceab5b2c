"""The whole report on real models: quality and fidelity, MACs, memory, environment, flags; the
PyTorch runtime; and the provenance manifest of a job."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import materials
from core.reports import render_report_html
from engine.bench.config import BenchmarkConfig
from engine.bench.report import CandidateInput, benchmark_models, choose_best
from engine.bench.runners import DeviceUnavailable, make_runner
from engine.data import Dataset
from engine.model import ModelFile

# The digits CNN of tests/materials.py: conv 1->32, conv 32->64 on 8x8, pool, conv 64->64 on 4x4,
# linear 64->10. Batch norms are folded into the convolutions by the export.
DIGITS_CNN_MACS = 8 * 8 * 32 * 1 * 9 + 8 * 8 * 64 * 32 * 9 + 4 * 4 * 64 * 64 * 9 + 64 * 10


def minilm_macs(tokens: int, *, pooler: bool) -> int:
    hidden, ffn, layers = 384, 1536, 6
    per_layer = tokens * (4 * hidden * hidden + 2 * hidden * ffn) + 2 * tokens * tokens * hidden
    return layers * per_layer + (hidden * hidden if pooler else 0)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def int8_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from onnxruntime.quantization import quantize_dynamic

    dest = tmp_path_factory.mktemp("int8") / "model.onnx"
    quantize_dynamic(str(materials.digits_cnn_onnx()), str(dest))
    return dest


@pytest.fixture(scope="module")
def digits_test_set() -> Dataset:
    _, x_test, _, y_test = materials.digits()
    return Dataset(format="npz", arrays={"image": x_test}, labels=y_test)


@pytest.fixture(scope="module")
def digits_report(int8_digits: Path, digits_test_set: Dataset) -> dict[str, Any]:
    return benchmark_models(
        ModelFile(path=materials.digits_cnn_onnx(), format="onnx"),
        [CandidateInput("int8", ModelFile(path=int8_digits, format="onnx"), recipe=[{"op": "quantize", "method": "dynamic"}])],
        dataset=digits_test_set,
        config=BenchmarkConfig(batch_sizes=[1, 32], threads=1, time_budget_seconds=1.5, fidelity_rows=450, min_cosine=0.9999999),
    )


def test_report_is_plain_json_in_the_documented_shape(digits_report: dict[str, Any]) -> None:
    text = json.dumps(digits_report)  # no numpy scalars or arrays anywhere
    assert json.loads(text) == digits_report
    for metrics in (digits_report["baseline"], digits_report["candidates"][0]["metrics"]):
        for key in ("size_bytes", "compressed_size_bytes", "params", "nonzero_params", "macs", "flops", "latency_ms", "throughput_per_s", "memory", "quality", "runtime"):
            assert key in metrics, key
        for bs in ("1", "32"):
            lat = metrics["latency_ms"][bs]
            assert lat["p50"] <= lat["p90"] <= lat["p99"]
            assert lat["p50_ci95"][0] <= lat["p50"] <= lat["p50_ci95"][1]
            assert lat["stopped_by"] in ("target_ci", "time_budget", "max_runs")
            assert sum(lat["histogram"]["counts"]) == lat["runs"]
    base_edges = digits_report["baseline"]["latency_ms"]["32"]["histogram"]["edges"]
    assert digits_report["candidates"][0]["metrics"]["latency_ms"]["32"]["histogram"]["edges"] == base_edges
    cand = digits_report["candidates"][0]
    assert set(cand) >= {"id", "recipe", "metrics", "ratios", "flags"}
    assert set(cand["ratios"]["speedup"]["1"]) == {"value", "ci95", "ci95_within_run", "verdict"}


def test_quality_and_fidelity_are_measured_on_the_same_labelled_rows(digits_report: dict[str, Any]) -> None:
    base_q = digits_report["baseline"]["quality"]
    assert base_q["rows"] == 450 and base_q["primary"] == "accuracy"
    assert base_q["accuracy"] > 0.9 and base_q["top5_accuracy"] >= base_q["accuracy"]
    assert base_q["accuracy_ci95"][0] < base_q["accuracy"] < base_q["accuracy_ci95"][1]
    cand = digits_report["candidates"][0]
    fid = cand["metrics"]["fidelity"]
    assert 0.9 < fid["cosine_mean"] < 1.0 and fid["cosine_min"] <= fid["cosine_mean"]
    assert fid["max_abs_error"] > 0 and fid["top1_agreement"] > 0.9 and fid["rows"] == 450
    change = cand["ratios"]["quality_change"]
    assert change["metric"] == "accuracy"
    assert change["delta"] == pytest.approx(cand["metrics"]["quality"]["accuracy"] - base_q["accuracy"])
    assert change["delta_ci95"][0] <= change["delta"] <= change["delta_ci95"][1]


def test_macs_size_and_memory_are_counted_for_every_model(digits_report: dict[str, Any]) -> None:
    base, cand = digits_report["baseline"], digits_report["candidates"][0]
    assert base["macs"] == DIGITS_CNN_MACS and base["flops"] == 2 * DIGITS_CNN_MACS
    assert cand["metrics"]["macs"] == DIGITS_CNN_MACS  # int8 does the same multiply-adds
    assert cand["ratios"]["size"] > 2.5  # int8 weights
    for metrics in (base, cand["metrics"]):
        mem = metrics["memory"]
        assert "error" not in mem, mem
        assert mem["peak_rss_bytes"]["32"] >= mem["peak_rss_bytes"]["1"] >= mem["loaded_rss_bytes"] > mem["idle_rss_bytes"] > 0
    assert cand["ratios"]["peak_memory"] is not None


def test_environment_says_what_ran_where(digits_report: dict[str, Any]) -> None:
    import onnxruntime

    env = digits_report["environment"]
    assert env["runtime"] == "onnxruntime" and env["runtime_version"] == onnxruntime.__version__
    assert env["device"] == "cpu" and env["providers"] == ["CPUExecutionProvider"]
    assert env["threads"] == 1 and env["intra_op_threads"] == 1
    assert env["cpu"] and isinstance(env["cpu_flags"], list) and env["torch"] and env["numpy"]
    assert digits_report["baseline"]["runtime"]["runtime"] == "onnxruntime"


def test_a_candidate_outside_the_quality_bound_is_flagged_and_not_chosen(digits_report: dict[str, Any]) -> None:
    cand = digits_report["candidates"][0]
    assert "below_quality_bound" in cand["flags"]
    assert "cosine" in cand["flag_reasons"]["below_quality_bound"]
    assert cand["quality_bound"]["min_cosine"] == 0.9999999
    assert choose_best(digits_report) is None


def test_the_real_report_renders_as_a_page(digits_report: dict[str, Any]) -> None:
    page = render_report_html({**digits_report, "best_candidate_id": None}, title="digits")
    assert page.count("<svg") == 3  # latency vs quality, one distribution per batch size
    assert "below quality bound" in page and "accuracy" in page


def test_pytorch_runtime_benchmarks_a_checkpoint_and_counts_its_macs(tmp_path: Path) -> None:
    folder = materials.minilm_hf_copy(tmp_path / "minilm")
    model = ModelFile(path=folder, format="hf")
    report = benchmark_models(
        model,
        [],
        dataset=None,
        config=BenchmarkConfig(runtime="torch", batch_sizes=[1], sequence_length=32, threads=1, time_budget_seconds=1.0, fidelity_rows=2),
    )
    base = report["baseline"]
    assert base["runtime"]["runtime"] == "torch" and report["environment"]["runtime"] == "torch"
    # FlopCounterMode, with the CPU attention kernel counted; the checkpoint also runs its pooler
    assert base["macs"] == minilm_macs(32, pooler=True)
    assert base["latency_ms"]["1"]["p50"] > 0 and base["params"] > 22_000_000
    assert "error" not in base["memory"], base["memory"]
    assert base["memory"]["model_rss_bytes"] > 50_000_000  # 90 MB of float weights


def test_onnx_macs_match_the_transformer_formula() -> None:
    from engine.bench.macs import count_macs
    from engine.bench.runners import batches

    model = ModelFile(path=materials.minilm_onnx(), format="onnx")
    runner = make_runner(model, threads=1)
    feed = batches(runner.inputs, dataset=None, batch_size=1, rows=1, sequence_length=48)[0]
    assert count_macs(model, runner, feed)["macs"] == minilm_macs(48, pooler=False)


def test_cuda_without_a_cuda_runtime_is_refused_not_measured_on_the_cpu() -> None:
    with pytest.raises(DeviceUnavailable):
        make_runner(ModelFile(path=materials.digits_cnn_onnx(), format="onnx"), device="cuda")


class _FakeGpuSession:
    """What onnxruntime's GPU build answers: the providers it was given (the boundary mocked)."""

    def __init__(self, providers: list[str]):
        self._providers = providers

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def get_inputs(self) -> list[Any]:
        return []

    def get_outputs(self) -> list[Any]:
        return []


@pytest.mark.parametrize(
    ("available", "tensorrt", "expected"),
    [
        (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], True,
         ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]),
        (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], False,
         ["CUDAExecutionProvider", "CPUExecutionProvider"]),
        (["CUDAExecutionProvider", "CPUExecutionProvider"], True, ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    ],
)
def test_a_cuda_runner_asks_for_tensorrt_where_installed_then_cuda(
    monkeypatch: pytest.MonkeyPatch, available: list[str], tensorrt: bool, expected: list[str]
) -> None:
    import onnxruntime

    from engine.bench import runners

    asked: list[list[str]] = []

    def session(path: Path, *, threads: int = 0, providers: list[str] | None = None, spin_between_runs: bool = True) -> _FakeGpuSession:
        asked.append(list(providers or []))
        return _FakeGpuSession([p for p in providers or [] if p in available])

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(available))
    monkeypatch.setattr(runners, "tensorrt_installed", lambda: tensorrt)
    monkeypatch.setattr(runners.onnx_model, "session", session)
    runner = make_runner(ModelFile(path=materials.digits_cnn_onnx(), format="onnx"), device="cuda")
    assert asked == [expected]
    assert runner.providers == expected


def test_a_job_writes_a_manifest_that_verifies_its_artifacts(tmp_path: Path) -> None:
    from engine.job import JobRequest, run_job

    _, x_test, _, y_test = materials.digits()
    dataset = tmp_path / "digits.npz"
    np.savez(dataset, image=x_test, labels=y_test)
    source = materials.digits_cnn_onnx()
    request = JobRequest(
        job_id="job_manifest",
        model_path=source,
        dataset_path=dataset,
        recipe=[{"op": "quantize", "method": "dynamic"}],
        benchmark={"batch_sizes": [8], "threads": 1, "time_budget_seconds": 1.0, "measure_memory": False},
        seed=7,
        candidate_id="cand_1",
        work_dir=tmp_path / "work",
        out_dir=tmp_path / "out",
    )
    result = run_job(request)
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert manifest["input_sha256"] == sha256(source)
    assert manifest["dataset_sha256"] == sha256(dataset)
    assert manifest["seed"] == 7 and manifest["job_id"] == "job_manifest"
    assert manifest["recipe"][0]["op"] == "quantize" and manifest["recipe"][0]["method"] == "dynamic"
    assert manifest["benchmark"]["batch_sizes"] == [8] and manifest["benchmark"]["target_ci_half_width"] == 0.03
    import onnxruntime

    assert manifest["libraries"]["onnxruntime"] == onnxruntime.__version__ and manifest["libraries"]["python"]
    models = [a for a in manifest["artifacts"] if a["kind"] == "model"]
    assert models, manifest["artifacts"]
    for artifact in models:
        assert artifact["sha256"] == sha256(out / artifact["path"])
        assert artifact["size_bytes"] == (out / artifact["path"]).stat().st_size
        assert artifact["candidate_id"] == "cand_1" and artifact["metrics"]["macs"] == DIGITS_CNN_MACS
    assert manifest["metrics"]["cand_1"]["quality"]["rows"] > 0
    assert manifest["environment"]["runtime"] == "onnxruntime"
    assert report["best_candidate_id"] == result["best_candidate_id"] == manifest["best_candidate_id"]
    assert report["candidates"][0]["metrics"]["latency_ms"]["8"]["histogram"]["counts"]


def test_labels_are_used_only_when_the_dataset_really_feeds_the_model() -> None:
    _, x_test, _, y_test = materials.digits()
    misnamed = Dataset(format="npz", arrays={"pixels": x_test}, labels=y_test)
    report = benchmark_models(
        ModelFile(path=materials.digits_cnn_onnx(), format="onnx"),
        [],
        dataset=misnamed,
        config=BenchmarkConfig(threads=1, time_budget_seconds=0.5, measure_memory=False),
    )
    assert "quality" not in report["baseline"]
    assert any("labels were not used" in note for note in report["notes"])


def test_text_rows_are_tokenized_for_an_exported_checkpoint() -> None:
    from engine.bench.runners import batches

    inputs = [{"name": n, "shape": ["batch", "sequence"], "dtype": "int64"} for n in ("input_ids", "attention_mask", "token_type_ids")]
    texts = Dataset(format="jsonl", texts=materials.sentences()[:10], labels=np.arange(10) % 2)
    once = batches(inputs, dataset=texts, batch_size=4, rows=10, sequence_length=24, tokenizer_folder=materials.minilm_folder())
    assert [f["input_ids"].shape for f in once] == [(4, 24), (4, 24), (2, 24)]
    assert set(once[0]) == {"input_ids", "attention_mask", "token_type_ids"}
    assert (once[0]["input_ids"][:, 0] == once[0]["input_ids"][0, 0]).all()  # [CLS] starts every row
    timing = batches(inputs, dataset=texts, batch_size=4, rows=12, sequence_length=24, tokenizer_folder=materials.minilm_folder(), full_batches=True)
    assert [f["input_ids"].shape[0] for f in timing] == [4, 4, 4]


def test_an_onnx_model_runs_in_pytorch_when_asked(tmp_path: Path) -> None:
    report = benchmark_models(
        ModelFile(path=materials.digits_cnn_onnx(), format="onnx"),
        [],
        dataset=None,
        config=BenchmarkConfig(runtime="torch", batch_sizes=[4], threads=1, time_budget_seconds=0.5, measure_memory=False),
    )
    base = report["baseline"]
    assert base["runtime"]["runtime"] == "torch" and base["runtime"]["converted_by"].startswith("onnx2torch")
    assert base["macs"] == DIGITS_CNN_MACS  # FlopCounterMode agrees with the ONNX count
    assert base["macs_method"].startswith("torch.utils.flop_counter")
    assert base["latency_ms"]["4"]["runs"] >= 30


def test_pooled_cosine_compares_each_rows_masked_mean_embedding() -> None:
    from engine.bench import fidelity

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(3, 5, 8))
    noise = rng.normal(size=(3, 5, 8))
    cand = ref + noise - noise.mean(axis=1, keepdims=True)  # every token moves, the mean stays
    mask = np.array([[1, 1, 1, 1, 1]] * 3)
    tokens = fidelity.compare([[ref]], [[cand]], [mask])
    pooled = fidelity.compare([[ref]], [[cand]], [mask], pooling="mean")
    assert tokens["cosine_of"] == "output" and tokens["cosine_mean"] < 0.9
    assert pooled["cosine_of"] == "mean_pooled" and pooled["cosine_mean"] == pytest.approx(1.0, abs=1e-12)
    assert pooled["max_abs_error"] == tokens["max_abs_error"]  # errors stay per token

    # Padding takes no part in the mean; the first token is the CLS embedding.
    mask = np.array([[1, 1, 1, 0, 0]] * 3)
    cand = ref.copy()
    cand[:, 1] += 0.5
    got = fidelity.compare([[ref]], [[cand]], [mask], pooling="mean")["cosine_mean"]
    a, b = ref[:, :3].mean(axis=1), cand[:, :3].mean(axis=1)
    want = ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean()
    assert got == pytest.approx(want, rel=1e-12) and got < 1 - 1e-4
    assert fidelity.compare([[ref]], [[cand]], [mask], pooling="cls")["cosine_mean"] == pytest.approx(1.0)
    assert fidelity.compare([[ref]], [[cand]], [mask], pooling="max")["cosine_of"] == "max_pooled"


def test_the_pooling_a_sentence_transformers_checkpoint_declares(tmp_path: Path) -> None:
    from engine.formats.hf import sentence_pooling

    assert sentence_pooling(materials.minilm_folder()) == "mean"  # all-MiniLM-L6-v2's 1_Pooling
    assert sentence_pooling(tmp_path) is None  # no modules.json: not a sentence-transformers model

    def declare(path: str, **modes: bool) -> str | None:
        (tmp_path / "modules.json").write_text(json.dumps([
            {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "path": path, "type": "sentence_transformers.models.Pooling"},
        ]))
        target = (tmp_path / path).resolve()
        target.mkdir(parents=True, exist_ok=True)
        (target / "config.json").write_text(json.dumps({"word_embedding_dimension": 8, **modes}))
        return sentence_pooling(tmp_path)

    assert declare("1_Pooling", pooling_mode_cls_token=True) == "cls"
    assert declare("1_Pooling", pooling_mode_mean_sqrt_len_tokens=True) == "mean"
    assert declare("1_Pooling", pooling_mode_cls_token=True, pooling_mode_mean_tokens=True) is None
    assert declare("1_Pooling", pooling_mode_lasttoken=True) is None
    assert declare("../outside", pooling_mode_mean_tokens=True) is None  # never read outside the upload
    (tmp_path / "modules.json").write_text("{not json")
    assert sentence_pooling(tmp_path) is None


@pytest.mark.parametrize(("setting", "compared"), [("auto", "mean_pooled"), ("none", "output"), ("cls", "cls_pooled")])
def test_the_benchmark_compares_what_the_checkpoint_declares_unless_told(setting: str, compared: str) -> None:
    model = ModelFile(path=materials.minilm_onnx(), format="onnx")
    report = benchmark_models(
        model,
        [CandidateInput(id="same", model=model)],
        dataset=Dataset(format="jsonl", texts=materials.sentences()[:4]),
        config=BenchmarkConfig(threads=1, time_budget_seconds=0.2, min_runs=5, warmup_runs=1, measure_memory=False,
                               fidelity_rows=4, fidelity_pooling=setting),
        tokenizer_folder=materials.minilm_folder(),
    )
    assert report["candidates"][0]["metrics"]["fidelity"]["cosine_of"] == compared
