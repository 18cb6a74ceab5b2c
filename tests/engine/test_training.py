"""The shared training loop (engine/training/) on the digits CNN converted from ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bench import materials
from engine import training
from engine.context import PassContext
from engine.data import Dataset
from engine.errors import Canceled
from engine.formats.torch_model import TorchModel, load_torch
from engine.model import ModelFile

ROWS = 640  # enough to learn digits in an epoch or two, small enough for 2 cores


class WorkerDied(RuntimeError):
    pass


@pytest.fixture(scope="module")
def digits_model() -> ModelFile:
    return ModelFile(materials.digits_cnn_onnx(), "onnx")


@pytest.fixture(scope="module")
def digits_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x_train, x_test, y_train, y_test = materials.digits()
    return x_train[:ROWS], x_test, y_train[:ROWS], y_test


def damaged(model: ModelFile, scale: float = 0.35) -> TorchModel:
    """The digits CNN with noise on every weight: a model that needs recovery."""
    tm = load_torch(model).trainable()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in tm.module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale * p.std())
    return tm


def make_ctx(
    tmp_path: Path, model: ModelFile, dataset: Dataset, **kwargs: Any
) -> tuple[PassContext, list]:
    events: list[tuple[str, dict[str, Any]]] = []
    work = tmp_path / "work" / "step1-finetune.labels"
    work.mkdir(parents=True, exist_ok=True)
    ctx = PassContext(
        work_dir=work,
        original=model,
        dataset=dataset,
        seed=3,
        event_fn=lambda event, **fields: events.append((event, fields)),
        **kwargs,
    )
    return ctx, events


def test_finetune_recovers_a_damaged_cnn_and_reports_each_epoch(
    tmp_path, digits_model, digits_data
):
    x_train, x_test, y_train, y_test = digits_data
    original = materials.accuracy(load_torch(digits_model).module, x_test, y_test)
    tm = damaged(digits_model)
    before = materials.accuracy(tm.module, x_test, y_test)
    ctx, events = make_ctx(
        tmp_path, digits_model, Dataset("npz", {"image": x_train}, labels=y_train)
    )

    result = training.fit(tm, ctx, training.TrainConfig(epochs=2, patience=3))

    after = materials.accuracy(tm.module, x_test, y_test)
    # Recovery is measured against the undamaged model (its accuracy depends on how the test
    # material trained where the tests run), not against a fixed number.
    assert before < original - 0.1 and after >= original - 0.03, (original, before, after)
    assert result.metric_name == "accuracy" and result.best_metric >= original - 0.05
    assert [row["epoch"] for row in result.history] == [0, 1, 2]
    epochs = [fields for name, fields in events if name == "train.epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert epochs[-1]["step"] == 2 * int(np.ceil(result.train_rows / 32))
    assert result.train_rows + result.validation_rows == ROWS
    assert ctx.report_sections["data_split"]["validation_rows"] == result.validation_rows == 64
    assert ctx.resolved["finetune"]["lr"] == pytest.approx(1e-3)


def test_killed_training_resumes_from_the_last_epoch_checkpoint(
    tmp_path, digits_model, digits_data
):
    x_train, _, y_train, _ = digits_data
    dataset = Dataset("npz", {"image": x_train}, labels=y_train)
    config = training.TrainConfig(epochs=3, patience=5, batch_size=64)

    uninterrupted = damaged(digits_model)
    ctx, _ = make_ctx(tmp_path / "a", digits_model, dataset, checkpoint_dir=tmp_path / "a" / "ckpt")
    reference = training.fit(uninterrupted, ctx, config)

    def die_after_first_epoch(row: dict[str, Any]) -> None:
        if row["epoch"] == 1:
            raise WorkerDied

    ckpt = tmp_path / "b" / "ckpt"
    ctx, _ = make_ctx(tmp_path / "b", digits_model, dataset, checkpoint_dir=ckpt)
    with pytest.raises(WorkerDied):
        training.fit(damaged(digits_model), ctx, config, on_epoch_end=die_after_first_epoch)

    # The job is delivered again: a fresh process loads the uploaded model again.
    resumed = damaged(digits_model)
    ctx, events = make_ctx(tmp_path / "b", digits_model, dataset, checkpoint_dir=ckpt)
    result = training.fit(resumed, ctx, config)

    assert result.resumed_from_epoch == 2
    trained_epochs = [f["epoch"] for name, f in events if name == "train.epoch"]
    assert trained_epochs == [2, 3]  # epoch 1 was not redone, epoch 0's evaluation neither
    assert [row["epoch"] for row in result.history] == [0, 1, 2, 3]
    # Same data order, RNG state and optimizer state: the resumed run is the uninterrupted one.
    assert [r["loss"] for r in result.history[1:]] == pytest.approx(
        [r["loss"] for r in reference.history[1:]], rel=1e-4
    )
    for (name, a), b in zip(
        uninterrupted.module.state_dict().items(), resumed.module.state_dict().values(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-5), name


def test_a_checkpoint_from_another_configuration_is_not_resumed(
    tmp_path, digits_model, digits_data
):
    x_train, _, y_train, _ = digits_data
    dataset = Dataset("npz", {"image": x_train}, labels=y_train)
    ckpt = tmp_path / "ckpt"
    ctx, _ = make_ctx(tmp_path, digits_model, dataset, checkpoint_dir=ckpt)
    training.fit(damaged(digits_model), ctx, training.TrainConfig(epochs=1, max_steps=3))

    ctx, events = make_ctx(tmp_path, digits_model, dataset, checkpoint_dir=ckpt)
    result = training.fit(damaged(digits_model), ctx, training.TrainConfig(epochs=1, max_steps=4))

    assert result.resumed_from_epoch is None
    assert result.history[-1]["step"] == 4
    assert [f["epoch"] for name, f in events if name == "train.epoch"] == [0, 1]


def test_early_stopping_restores_the_best_weights(tmp_path, digits_model, digits_data):
    x_train, _, y_train, _ = digits_data
    tm = load_torch(digits_model).trainable()
    start = {k: v.clone() for k, v in tm.module.state_dict().items()}
    ctx, events = make_ctx(
        tmp_path, digits_model, Dataset("npz", {"image": x_train}, labels=y_train)
    )

    # A learning rate this large wrecks an already trained model: no epoch beats epoch 0.
    result = training.fit(
        tm, ctx, training.TrainConfig(epochs=5, lr=0.5, warmup_fraction=0.0, patience=1)
    )

    assert result.best_epoch == 0
    assert len(result.history) == 2  # stopped after the first epoch that did not improve
    assert result.history[1]["metric"] < result.history[0]["metric"]
    assert any(name == "train.early_stop" for name, _ in events)
    for name, value in tm.module.state_dict().items():
        assert torch.equal(value, start[name]), name


def test_without_labels_the_student_learns_the_originals_outputs(
    tmp_path, digits_model, digits_data
):
    x_train, _, _, _ = digits_data
    tm = damaged(digits_model, scale=0.5)
    ctx, _ = make_ctx(tmp_path, digits_model, Dataset("npz", {"image": x_train}))

    result = training.fit(tm, ctx, training.TrainConfig(epochs=2))

    assert result.metric_name == "cosine_to_teacher"
    assert result.history[0]["metric"] < 0.9
    assert result.best_metric > result.history[0]["metric"] + 0.05


def test_cancel_stops_training_between_steps(tmp_path, digits_model, digits_data):
    x_train, _, y_train, _ = digits_data
    cancel = tmp_path / "cancel"
    cancel.touch()
    ctx, events = make_ctx(
        tmp_path,
        digits_model,
        Dataset("npz", {"image": x_train}, labels=y_train),
        cancel_file=cancel,
    )
    with pytest.raises(Canceled):
        training.fit(damaged(digits_model), ctx, training.TrainConfig(epochs=1))
    assert [f["epoch"] for name, f in events if name == "train.epoch"] == [0]


def test_batches_cast_arrays_to_the_model_input_dtypes(digits_model, digits_data):
    x_train, _, y_train, _ = digits_data
    tm = load_torch(digits_model)
    dataset = Dataset("npz", {"image": x_train[:10].astype(np.float64)}, labels=y_train[:10])
    batches = list(training.torch_batches(dataset, tm, 4, shuffle=True, seed=0))
    assert [len(labels) for _, labels in batches] == [4, 4, 2]
    assert all(feeds["image"].dtype == torch.float32 for feeds, _ in batches)
    seen = torch.cat([labels for _, labels in batches]).sort().values
    assert torch.equal(seen, torch.from_numpy(np.sort(y_train[:10])))
    again = list(training.torch_batches(dataset, tm, 4, shuffle=True, seed=0))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again, strict=True))
