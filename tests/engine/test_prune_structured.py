"""prune.structured on the digits CNN (ONNX -> onnx2torch -> torch-pruning -> ONNX)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import materials
from engine.bench.latency import measure_interleaved, speedup
from engine.bench.runners import OnnxRunner
from engine.data import Dataset
from engine.errors import DatasetInvalid
from engine.formats import onnx_model
from engine.model import ModelFile
from engine.registry import get_pass
from tests.engine.pruning_support import (
    digits_train_dataset,
    initializer_arrays,
    onnx_outputs,
    onnx_test_accuracy,
    run_step,
    single_torch_thread,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def cnn() -> ModelFile:
    return ModelFile(materials.digits_cnn_onnx(), "onnx")


@pytest.fixture(scope="module")
def half_macs(cnn: ModelFile, tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelFile, dict]:
    step = {"op": "prune", "method": "structured", "macs_ratio": 0.5, "finetune_epochs": 3}
    out, ctx = run_step(step, cnn, tmp_path_factory.mktemp("half-macs"), digits_train_dataset())
    return out, ctx.report_sections["prune"]


def test_structured_is_the_default_prune_method() -> None:
    assert get_pass("prune").method == "structured"


def test_half_the_macs_with_finetuning_keeps_accuracy_within_one_point(
    cnn: ModelFile, half_macs: tuple
) -> None:
    out, report = half_macs
    assert report["macs"] <= 0.5 * report["macs_before"]
    assert onnx_test_accuracy(out.path) >= onnx_test_accuracy(cnn.path) - 0.01


def test_pruned_model_is_physically_smaller_and_keeps_its_signature(
    cnn: ModelFile, half_macs: tuple
) -> None:
    out, report = half_macs
    params_before = sum(a.size for a in initializer_arrays(cnn.path).values())
    params_after = sum(a.size for a in initializer_arrays(out.path).values())
    assert params_after <= 0.6 * params_before
    assert report["params"] == params_after
    # No masks: the weights are dense, and smaller.
    assert all((a != 0).mean() > 0.9 for a in initializer_arrays(out.path).values() if a.ndim >= 2)
    # round_to 8 (the default): onnxruntime's blocked conv kernels want multiples of 8 channels.
    assert all(a.shape[0] % 8 == 0 for a in initializer_arrays(out.path).values() if a.ndim == 4)
    proto = onnx_model.load_proto(out.path)
    assert onnx_model.signature(proto) == onnx_model.signature(onnx_model.load_proto(cnn.path))
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    assert OnnxRunner(out, threads=1).run({"image": x})[0].shape == (3, 10)


def test_pruned_model_is_measurably_faster_in_the_same_process(
    cnn: ModelFile, half_macs: tuple
) -> None:
    out, _ = half_macs
    _, x_test, _, _ = materials.digits()
    runners = [OnnxRunner(cnn, threads=1), OnnxRunner(out, threads=1)]
    feeds = [{"image": x_test[:256]}, {"image": x_test[194:450]}]
    timing = measure_interleaved(
        runners,
        feeds,
        warmup_runs=5,
        min_runs=60,
        max_runs=400,
        time_budget_seconds=8.0,
        target_ci_half_width=0.03,
    )
    result = speedup(timing.samples[0], timing.samples[1])
    assert result["verdict"] == "faster", result
    assert result["ci95"][0] > 1.1, result


def _dead_end_cnn(dest: Path) -> ModelFile:
    """A CNN in which a quarter of each pruned layer's channels have the largest weights but feed
    nothing (the next layer's weights on them are 0): the loss does not depend on them."""
    import torch

    from engine.formats import torch_bridge

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10),
    ).eval()
    dead = [0, 5, 10, 15]
    with torch.no_grad():
        for layer, consumer in ((model[0], model[2]), (model[2], model[6])):
            layer.weight[dead] *= 20.0
            consumer.weight[:, dead] = 0.0
    torch_bridge.export_onnx(
        model,
        (torch.zeros(2, 1, 8, 8),),
        dest,
        inputs=[{"name": "image", "shape": ["batch", 1, 8, 8], "dtype": "float32"}],
        outputs=[{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}],
    )
    return ModelFile(dest, "onnx")


def test_taylor_importance_uses_the_jobs_data_where_weight_norms_cannot(tmp_path: Path) -> None:
    """First-order Taylor (|w * dL/dw| on the job's batches) sees that the largest channels feed
    nothing and removes exactly them, so the outputs do not change; L2 keeps them for their size
    and removes channels the outputs need."""
    model = _dead_end_cnn(tmp_path / "cnn.onnx")
    x_train, x_test, _, _ = materials.digits()
    outputs = {}
    for importance in ("taylor", "l2"):
        step = {
            "op": "prune",
            "method": "structured",
            "ratio": 0.25,
            "round_to": None,
            "importance": importance,
            "finetune_epochs": 0,
        }
        out, ctx = run_step(step, model, tmp_path / importance, digits_train_dataset())
        assert ctx.report_sections["prune"]["importance"] == importance
        assert ctx.report_sections["prune"]["params"] < ctx.report_sections["prune"]["params_before"]
        outputs[importance] = onnx_outputs(out.path, {"image": x_test[:64]})
    original = onnx_outputs(model.path, {"image": x_test[:64]})
    np.testing.assert_allclose(outputs["taylor"], original, rtol=1e-4, atol=1e-4)
    assert np.abs(outputs["l2"] - original).max() > 1e-2


def test_taylor_importance_without_labels_is_refused_before_running(
    cnn: ModelFile, tmp_path: Path
) -> None:
    x_train, _, _, _ = materials.digits()
    unlabelled = Dataset(format="npz", arrays={"image": x_train})
    with pytest.raises(DatasetInvalid, match="taylor"):
        run_step(
            {"op": "prune", "method": "structured", "importance": "taylor"},
            cnn,
            tmp_path,
            unlabelled,
        )


def test_rounds_stop_at_the_quality_bound_and_keep_the_last_good_model(
    cnn: ModelFile, tmp_path: Path
) -> None:
    # Round 1 (1 epoch of fine-tuning) recovers; removing 90% of the channels by round 3 cannot.
    step = {
        "op": "prune",
        "method": "structured",
        "ratio": 0.9,
        "round_to": None,
        "steps": 3,
        "finetune_epochs": 1,
        "max_metric_drop": 0.02,
    }
    out, ctx = run_step(step, cnn, tmp_path, digits_train_dataset())
    report = ctx.report_sections["prune"]
    assert report["stopped_early"] is True
    assert report["rounds"][-1]["accepted"] is False
    kept = [r for r in report["rounds"] if r["accepted"]]
    assert kept, report["rounds"]
    # The delivered model is the last accepted round's, and it meets the bound.
    assert report["params"] == kept[-1]["params"]
    assert kept[-1]["metric"] >= report["metric_unpruned"] - 0.02
