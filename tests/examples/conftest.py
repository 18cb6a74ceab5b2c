"""The runnable examples (examples/, README.md's code) against one service started as processes
for the whole package: the embedded default, with loopback webhook receivers allowed (the
receiver example listens on 127.0.0.1)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.stack import ServiceStack

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
try:
    import shrink_client  # noqa: F401  (installed by `make install`)
except ImportError:  # a checkout whose venv lacks the client: import it from the tree
    sys.path.insert(0, str(ROOT / "clients" / "python"))

# Jobs of seconds on a tiny model. The benchmark is short but not starved: a tiny model's runs
# take microseconds, so 300 of them cost nothing and keep a same-speed candidate from being
# called slower by a noisy sample.
FAST_BENCH = {"batch_sizes": [1], "warmup_runs": 20, "min_runs": 30, "max_runs": 300, "time_budget_seconds": 2,
              "fidelity_rows": 8, "measure_memory": False}
# Zeroed weights keep the graph and its speed, so the candidate is not flagged and is the best
# (tests/client's recipe). The examples' success cases run a goal job on a budget of seconds.
RECIPE = [{"op": "prune", "method": "onnx_magnitude", "sparsity": 0.3}]
RECIPE_SPEC: dict[str, Any] = {"recipe": RECIPE, "benchmark": FAST_BENCH}
# At batch 8, where int8 of the examples' CNN (``model_file``) is clearly faster than float on
# every CPU, so that the goal finds a best however loaded the machine is.
GOAL_SPEC: dict[str, Any] = {"goal": {"metric": "cosine", "max_drop": 0.05, "batch_size": 8, "budget_minutes": 0.5, "methods": ["quantize"]},
                              "benchmark": {**FAST_BENCH, "batch_sizes": [8]}}
# Jobs that end without a model to deliver: a CUDA benchmark on a worker with no CUDA provider
# fails the job; a cosine bound no pruned model meets flags the only candidate (no best).
FAILING_SPEC: dict[str, Any] = {"recipe": RECIPE, "benchmark": {**FAST_BENCH, "device": "cuda"}}
UNMET_SPEC: dict[str, Any] = {"recipe": RECIPE, "benchmark": {**FAST_BENCH, "min_cosine": 0.999999}}


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


@pytest.fixture(scope="package")
def examples_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    tmp = tmp_path_factory.mktemp("examples-stack")
    env = {"SHRINK_ENV": "test", "SHRINK_DATA_DIR": str(tmp / "var"), "SHRINK_ALLOW_PRIVATE_WEBHOOKS": "true"}
    with ServiceStack(env, tmp) as stack:
        yield stack


@pytest.fixture(scope="module")
def api_key(examples_stack: ServiceStack, request: pytest.FixtureRequest) -> str:
    """A tenant of each test module's own (tenant names are unique)."""
    tenant = examples_stack.admin("create-tenant", request.module.__name__.rsplit(".", 1)[-1].replace("_", "-"))
    return examples_stack.admin("create-key", tenant)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's CNN (two convolutions, 64 and 128 channels, 3x32x32 images), random weights:
    small, and int8 makes it measurably faster (1.85x at batch 8 on an Intel Xeon with VNNI),
    so a goal's search finds it a faster model; the digits CNN's int8 margin at batch 1 is a few
    percent on some CPUs, which a loaded machine's timing can erase."""
    import torch

    target = tmp_path_factory.mktemp("model") / "classifier.onnx"
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(64, 128, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 10),
    ).eval()  # fmt: skip
    torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), str(target), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)  # fmt: skip
    return target
