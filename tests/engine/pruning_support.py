"""What the pruning tests share: running one recipe step as the pipeline would, and digits data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import materials
from engine.context import PassContext
from engine.data import Dataset
from engine.model import ModelFile
from engine.registry import build_step


def run_step(
    step: dict[str, Any], model: ModelFile, work: Path, dataset: Dataset | None = None
) -> tuple[ModelFile, PassContext]:
    """Build, check and run one step (as engine.pipeline does) with a fresh context."""
    work.mkdir(parents=True, exist_ok=True)
    ctx = PassContext(
        work_dir=work, original=model, dataset=dataset, checkpoint_dir=work / "checkpoints"
    )
    configured = build_step(step)
    configured.check(model, ctx)
    return configured.run(model, ctx), ctx


def digits_train_dataset() -> Dataset:
    """The digits training rows as a job's .npz dataset would hold them (input name: image)."""
    x_train, _, y_train, _ = materials.digits()
    return Dataset(format="npz", arrays={"image": x_train}, labels=y_train)


def onnx_outputs(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    from engine.formats.onnx_model import session

    sess = session(path, threads=1)
    return sess.run(None, feeds)[0]


def onnx_test_accuracy(path: Path) -> float:
    _, x_test, _, y_test = materials.digits()
    return float((onnx_outputs(path, {"image": x_test}).argmax(1) == y_test).mean())


def initializer_arrays(path: Path) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    from engine.formats.onnx_model import load_proto

    return {t.name: numpy_helper.to_array(t) for t in load_proto(path).graph.initializer}


@pytest.fixture(scope="module")
def single_torch_thread() -> Iterator[None]:
    """The digits CNN's convolutions are too small to share between threads; on a loaded 2-core
    machine OpenMP's waiting threads made each conv step 40x slower (3 ms -> 130 ms, measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
