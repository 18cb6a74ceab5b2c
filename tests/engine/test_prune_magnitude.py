"""prune.magnitude: unstructured L1 pruning of PyTorch models (here an ONNX CNN via onnx2torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import materials
from engine.bench.sizes import size_on_disk
from engine.errors import ConfigInvalid
from engine.job import package_model
from engine.model import ModelFile
from engine.registry import build_step
from tests.engine.pruning_support import (
    digits_train_dataset,
    initializer_arrays,
    onnx_test_accuracy,
    run_step,
    single_torch_thread,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def cnn() -> ModelFile:
    return ModelFile(materials.digits_cnn_onnx(), "onnx")


def _weights(path: Path) -> dict[str, np.ndarray]:
    return {k: v for k, v in initializer_arrays(path).items() if v.ndim >= 2}


def test_global_gradual_90_percent_keeps_accuracy_and_compresses_5x(
    cnn: ModelFile, tmp_path: Path
) -> None:
    step = {
        "op": "prune",
        "method": "magnitude",
        "sparsity": 0.9,
        "scope": "global",
        # Measured on the seeded digits CNN (0.973): 3 rounds x 2 epochs 0.944, 3 x 4 0.980,
        # 5 x 3 0.991. Gradual pruning needs the recovery between its rounds.
        "steps": 5,
        "finetune_epochs": 3,
    }
    out, ctx = run_step(step, cnn, tmp_path, digits_train_dataset())

    report = ctx.report_sections["prune"]
    weights = _weights(out.path)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros / sum(w.size for w in weights.values()) == pytest.approx(0.9, abs=0.005)
    assert [r["target_sparsity"] for r in report["rounds"]] == sorted(
        r["target_sparsity"] for r in report["rounds"]
    )
    assert report["finetuned"] and len(report["rounds"]) == 5
    assert onnx_test_accuracy(out.path) >= onnx_test_accuracy(cnn.path) - 0.01
    original, pruned = size_on_disk(cnn), size_on_disk(out)
    assert original["size_bytes"] / pruned["compressed_size_bytes"] >= 5.0
    assert report["compressed_size_bytes"] == pruned["compressed_size_bytes"]
    assert report["nonzero_params"] < 0.15 * report["params"]
    # The job delivers it deflated, which is where the saving becomes real.
    artifact, fmt = package_model(out, tmp_path / "artifacts", "model")
    assert (artifact.name, fmt) == ("model.onnx.zip", "onnx")
    assert original["size_bytes"] / artifact.stat().st_size >= 5.0


def test_local_scope_gives_every_layer_the_same_sparsity_without_data(
    cnn: ModelFile, tmp_path: Path
) -> None:
    out, ctx = run_step(
        {"op": "prune", "method": "magnitude", "sparsity": 0.6, "scope": "local"}, cnn, tmp_path
    )

    for name, weight in _weights(out.path).items():
        assert (weight == 0).mean() == pytest.approx(0.6, abs=0.01), name
    assert ctx.report_sections["prune"]["finetuned"] is False


def test_two_four_pattern_keeps_two_of_every_four_input_weights(
    cnn: ModelFile, tmp_path: Path
) -> None:
    out, ctx = run_step({"op": "prune", "method": "magnitude", "pattern": "2:4"}, cnn, tmp_path)

    checked = 0
    for weight in _weights(out.path).values():
        if weight.ndim == 4 and weight.shape[1] % 4 == 0:  # conv [out, in, kh, kw]: groups along in
            groups = np.moveaxis(weight, 1, -1).reshape(-1, 4)
            assert ((groups != 0).sum(1) <= 2).all()
            checked += 1
    assert checked >= 2
    # The first conv has one input channel: no group of four, so it is left dense and reported.
    assert ctx.report_sections["prune"]["rounds"][0]["skipped_layers"]


def test_two_four_pattern_refuses_another_sparsity() -> None:
    with pytest.raises(ConfigInvalid, match="2:4"):
        build_step({"op": "prune", "method": "magnitude", "pattern": "2:4", "sparsity": 0.7})


def test_quality_bound_stops_early_and_returns_the_last_good_model(
    cnn: ModelFile, tmp_path: Path
) -> None:
    # 99% without fine-tuning cannot hold accuracy: the bound must stop the schedule.
    step = {
        "op": "prune",
        "method": "magnitude",
        "sparsity": 0.99,
        "steps": 3,
        "finetune_epochs": 0,
        "max_metric_drop": 0.01,
    }
    out, ctx = run_step(step, cnn, tmp_path, digits_train_dataset())

    report = ctx.report_sections["prune"]
    assert report["stopped_early"] is True
    accepted = [r for r in report["rounds"] if r["accepted"]]
    rejected = report["rounds"][-1]
    assert rejected["accepted"] is False
    assert rejected["metric"] < report["metric_unpruned"] - 0.01
    expected = accepted[-1]["sparsity"] if accepted else 0.0
    weights = _weights(out.path)
    achieved = sum(int((w == 0).sum()) for w in weights.values()) / sum(
        w.size for w in weights.values()
    )
    assert achieved == pytest.approx(expected, abs=0.005)
    assert achieved < 0.99
