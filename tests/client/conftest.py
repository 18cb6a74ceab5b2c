"""The client's tests: the SDK and the CLI against the real service (``shared_stack``: one per
module), and the retry and event-stream logic against ``httpx`` mock transports."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from bench.stack import ServiceStack

CLIENT_ROOT = Path(__file__).resolve().parents[2] / "clients" / "python"
try:
    import shrink_client  # noqa: F401  (installed by `make install`)
except ImportError:  # a checkout whose venv lacks the client: import it from the tree
    sys.path.insert(0, str(CLIENT_ROOT))

# Short benchmark settings so that a job takes seconds (tests/e2e/test_whole_road.py's, without
# the memory measurement's child processes).
FAST_BENCH = {"batch_sizes": [1], "warmup_runs": 2, "min_runs": 5, "max_runs": 30, "time_budget_seconds": 2,
              "fidelity_rows": 8, "measure_memory": False}
# Zeroed weights keep the graph and its speed: the candidate is not flagged, so it is the best.
RECIPE = [{"op": "prune", "method": "onnx_magnitude", "sparsity": 0.3}]


def tiny_onnx(path: Path) -> Path:
    """A two-layer perceptron (16 -> 32 -> 4) with a dynamic batch axis, built without torch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(16, 32)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(32, 4)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def api_key(shared_stack: ServiceStack) -> str:
    tenant = shared_stack.admin("create-tenant", "sdk-tests")
    return shared_stack.admin("create-key", tenant)
