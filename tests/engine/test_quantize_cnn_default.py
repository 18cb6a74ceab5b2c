"""The default ``{"op": "quantize"}`` on a convolutional model never delivers a slower model.

Dynamic int8 made every Conv of the digits CNN a ``ConvInteger`` (several times slower than
float); the default now quantizes a convolutional graph statically, times it against the float
model inside the pass, and delivers int8 only where it measured faster. These tests hold the
delivery (no ConvInteger, same answers as the original, the choice explained) and the property
the job's benchmark checks (the candidate is not measurably slower), not a speed figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import materials
from engine.bench.config import BenchmarkConfig
from engine.bench.fidelity import compare
from engine.bench.report import CandidateInput, benchmark_models
from engine.context import PassContext
from engine.data import Dataset
from engine.formats import onnx_model
from engine.model import ModelFile
from engine.quantization import convolutional
from engine.registry import build_step

TARGET_COSINE = 0.99  # the default's target_cosine


@pytest.fixture(scope="module")
def cnn() -> ModelFile:
    return ModelFile(materials.digits_cnn_onnx(), "onnx")


@pytest.fixture(scope="module")
def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return materials.digits()


@pytest.fixture(scope="module", params=["without a dataset", "with a dataset"])
def default_quantized(
    request: pytest.FixtureRequest, cnn: ModelFile, digits_split, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ModelFile, PassContext]:
    """The default step through the pipeline's interface: calibrated on generated inputs, or on
    training images (the checks below use the held-out test images)."""
    x_train, _, y_train, _ = digits_split
    dataset = Dataset("npz", arrays={"image": x_train[:256]}, labels=y_train[:256]) if request.param == "with a dataset" else None
    ctx = PassContext(work_dir=tmp_path_factory.mktemp("quantize-cnn"), original=cnn, dataset=dataset)
    step = build_step({"op": "quantize"})
    step.check(cnn, ctx)
    return step.run(cnn, ctx), ctx


def _op_types(model: ModelFile) -> list[str]:
    return [n.op_type for n in onnx_model.load_proto(model.path, with_data=False).graph.node]


def test_default_on_a_cnn_delivers_no_convinteger_and_the_original_answers(
    cnn: ModelFile, default_quantized, digits_split
) -> None:
    out, ctx = default_quantized
    ops = _op_types(out)
    assert "ConvInteger" not in ops and "DynamicQuantizeLinear" not in ops
    _, x_test, _, _ = digits_split
    reference = onnx_model.session(cnn.path).run(None, {"image": x_test})
    candidate = onnx_model.session(out.path).run(None, {"image": x_test})
    fidelity = compare([reference], [candidate])
    assert fidelity["top1_agreement"] >= 0.99, fidelity
    assert fidelity["cosine_mean"] >= TARGET_COSINE, fidelity
    assert ctx.resolved["met_target"]


def test_default_on_a_cnn_says_which_variant_it_chose_and_why(default_quantized) -> None:
    out, ctx = default_quantized
    resolved = ctx.resolved
    variant = resolved["variant"]
    assert variant in ("int8", "optimized_float", "original")
    assert resolved["reason"] and resolved["recipe"]
    section = ctx.report_sections["default_quantization"]
    assert section["chosen"] == variant and section["reason"] == resolved["reason"]
    speed = resolved["speedup_vs_original"]
    int8_vs_float = resolved["int8_speedup_vs_optimized_float"]
    # Timed at batch size 1 and at the calibration batches' size, with the benchmark's intervals.
    assert set(int8_vs_float) == set(speed["int8"]) == {"1", "8"}
    assert all(s["ci95"][0] <= s["value"] <= s["ci95"][1] for s in int8_vs_float.values())
    ops = set(_op_types(out))
    if variant == "int8":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        assert resolved["recipe"].startswith("static int8 QDQ per-channel")
        verdicts = [s["verdict"] for s in int8_vs_float.values()]
        assert "faster" in verdicts and "slower" not in verdicts
        assert all(s["verdict"] != "slower" for s in speed["int8"].values())
        # The first convolution reads one channel (9 terms per output): kept in float.
        assert resolved["kept_float"] and resolved["int8_layers"]
    else:
        assert "QuantizeLinear" not in ops
        assert "no int8 variant kept quality and ran faster" in resolved["recipe"] or variant == "original"
    calibration = "the job's dataset" if ctx.dataset is not None else "inputs generated from the signature"
    assert resolved["calibration"] == calibration


def test_the_job_benchmark_does_not_flag_the_default_cnn_candidate_slower(cnn: ModelFile, default_quantized, digits_split) -> None:
    """What the job's benchmark would say: the candidate's speedup interval never lies below 1.
    Dynamic int8 (the old default) was flagged here: several times slower at every batch size."""
    out, ctx = default_quantized
    _, x_test, _, y_test = digits_split
    dataset = Dataset("npz", arrays={"image": x_test}, labels=y_test) if ctx.dataset is not None else None
    config = BenchmarkConfig.model_validate(
        {"threads": 1, "batch_sizes": [1, 32], "measure_memory": False, "fidelity_rows": 256, "time_budget_seconds": 2.0}
    )
    # When the pass delivers float (as fast as the original), the benchmark compares two models of
    # one speed and flags one of them by chance in a few percent of runs (its false-positive
    # rate). A second, independent measurement must then agree: a model that really is slower
    # (the old default: several times) is flagged in both.
    runs = []
    for _ in range(2):
        report = benchmark_models(cnn, [CandidateInput("default", out)], dataset=dataset, config=config)
        cand = report["candidates"][0]
        fidelity = cand["metrics"]["fidelity"]
        if dataset is not None:
            assert fidelity["top1_agreement"] >= 0.99  # on real held-out digits
        else:
            # Generated inputs (noise) give near-tied logits, whose argmax flips at the slightest
            # change: measured 0.988 agreement at cosine min 0.9996. The cosine is the check there.
            assert fidelity["cosine_min"] >= 0.999 and fidelity["top1_agreement"] >= 0.97
        runs.append(cand["ratios"]["speedup"])
        if "slower_than_baseline" not in cand["flags"]:
            break
    else:
        raise AssertionError(f"flagged slower in two independent runs: {runs} ({ctx.resolved.get('reason')})")


def _speedups(*verdicts: str) -> dict[str, dict[str, Any]]:
    value = {"faster": 1.2, "slower": 0.8, "no_significant_difference": 1.0}
    return {
        bs: {"value": value[v], "ci95": [value[v] - 0.05, value[v] + 0.05], "verdict": v}
        for bs, v in zip(("1", "8"), verdicts, strict=True)
    }


GOOD = {"cosine_mean": 0.9999, "cosine_min": 0.999, "top1_agreement": 1.0}
PATHS = {"original": Path("a"), "optimized_float": Path("b"), "int8": Path("c")}


@pytest.mark.parametrize(
    "int8_vs_original,int8_vs_float,float_vs_original,int8_fidelity,expected",
    [
        (("faster", "faster"), ("no_significant_difference", "faster"), ("no_significant_difference",) * 2, GOOD, "int8"),
        # Faster at a large batch but slower for a single request: not delivered.
        (("slower", "faster"), ("slower", "faster"), ("no_significant_difference", "faster"), GOOD, "optimized_float"),
        # Never "faster" on a bare median: an interval that contains 1 is no speedup.
        (("no_significant_difference",) * 2, ("no_significant_difference",) * 2, ("faster",) * 2, GOOD, "optimized_float"),
        # Fast but wrong answers: not delivered.
        (("faster", "faster"), ("faster", "faster"), ("faster", "no_significant_difference"), {**GOOD, "top1_agreement": 0.95}, "optimized_float"),
        (("faster", "faster"), ("faster", "faster"), ("faster",) * 2, {**GOOD, "cosine_mean": 0.98}, "optimized_float"),
        # The optimized float graph measured slower than the original: the original it is.
        (("slower", "slower"), ("slower", "slower"), ("slower", "no_significant_difference"), GOOD, "original"),
        # Nor is a rewrite delivered that is not measurably faster: within the noise at the timed
        # batch sizes it was 0.94x at batch 64 on the digits CNN; the original cannot be slower.
        (("slower", "slower"), ("slower", "slower"), ("no_significant_difference",) * 2, GOOD, "original"),
    ],
)
def test_the_choice_delivers_int8_only_when_it_keeps_quality_and_measured_faster(
    int8_vs_original, int8_vs_float, float_vs_original, int8_fidelity, expected: str
) -> None:
    chosen, reason = convolutional.choose(
        PATHS,
        {"int8": int8_fidelity, "optimized_float": GOOD},
        {"int8": _speedups(*int8_vs_original), "optimized_float": _speedups(*float_vs_original)},
        _speedups(*int8_vs_float),
        TARGET_COSINE,
    )
    assert chosen == expected, reason
    assert reason


def test_a_transformer_graph_keeps_the_transformer_recipe() -> None:
    minilm = onnx_model.load_proto(materials.minilm_onnx(), with_data=False)
    cnn = onnx_model.load_proto(materials.digits_cnn_onnx(), with_data=False)
    assert not convolutional.is_convolutional(minilm)
    assert convolutional.is_convolutional(cnn)
    quantized, kept = convolutional.int8_layers(cnn)
    assert len(quantized) == 2 and len(kept) == 2  # the 1-channel first Conv and the 10-class head stay float


def test_the_variants_are_timed_where_the_caller_judges_them(cnn: ModelFile, tmp_path: Path) -> None:
    """A goal job judges latency at its own batch size: int8 and float are timed there only."""
    ctx = PassContext(work_dir=tmp_path, original=cnn)
    step = build_step({"op": "quantize", "timing_batch_sizes": [16], "calibration_rows": 16})
    step.check(cnn, ctx)
    step.run(cnn, ctx)
    assert set(ctx.resolved["speedup_vs_original"]["optimized_float"]) == {"16"}
