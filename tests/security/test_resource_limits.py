"""A job or an upload that runs out of the sandbox's memory, CPU time, wall time or file size fails
with ``resource_limit``, naming the limit and the setting that raises it; no error a user reads
carries a traceback or a server path. The sandbox is run directly on hostile models, then one job
through the service."""

from __future__ import annotations

import errno
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench.stack import ServiceStack
from core.errors import ShrinkError
from core.sandbox import SandboxResult, run_engine
from core.settings import Settings
from engine.cli import _emit_to_fd, resource_limit_hit
from tests.e2e.test_whole_road import FAST_BENCH
from tests.services import clear_caches
from worker.runner import _job_error

TB4 = 4 * 1024**4


def _model(path: Path, nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto], width: int = 64, out: list[int] | None = None) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, width] if out is None else out)],
                              initializer=initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _fill(name: str, shape: list[int], value: float) -> list[Any]:
    """A ConstantOfShape node filling ``name`` with ``value``, and its shape initializer."""
    dims = numpy_helper.from_array(np.array(shape, dtype=np.int64), f"{name}_shape")
    node = helper.make_node("ConstantOfShape", [f"{name}_shape"], [name], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [value]))
    return [node, dims]


def bomb_model(path: Path) -> Path:
    """A valid model (one MatMul a quantizer can work on) whose graph asks for 4 TB when run."""
    big, dims = _fill("big", [TB4 // 4], 1.0)
    weight = numpy_helper.from_array(np.ones((64, 64), dtype=np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), big,
             helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0), helper.make_node("Add", ["h", "s"], ["z"])]
    return _model(path, nodes, [dims, weight])


def slow_model(path: Path) -> Path:
    """A small file that takes many CPU seconds to run: 40 chained 1500x1500 matrix products."""
    c, dims = _fill("c", [1500, 1500], 0.001)
    nodes = [c, helper.make_node("ReduceSum", ["x"], ["x1"], keepdims=0), helper.make_node("Add", ["c", "x1"], ["m0"])]
    nodes += [helper.make_node("MatMul", [f"m{i}", "c"], [f"m{i + 1}"]) for i in range(40)]
    nodes.append(helper.make_node("ReduceSum", ["m40"], ["z"], keepdims=0))
    return _model(path, nodes, [dims], out=[])


def plain_model(path: Path) -> Path:
    """About 1 MB of weights."""
    weight = numpy_helper.from_array(np.ones((512, 512), dtype=np.float32), "w")
    return _model(path, [helper.make_node("MatMul", ["x", "w"], ["z"])], [weight], width=512)


def _run_job(tmp: Path, model: Path, settings: Settings, *, timeout: float = 120, kind: str = "benchmark") -> SandboxResult:
    request = {"job_id": "job_limits", "kind": kind, "model_path": str(model), "candidate_id": "cand_limits_1",
               "work_dir": str(tmp / "work"), "out_dir": str(tmp / "out"), "benchmark": {**FAST_BENCH, "measure_memory": False}}
    (tmp / "request.json").write_text(json.dumps(request))
    return run_engine(["run-job", str(tmp / "request.json")], work_dir=tmp / "sandbox", timeout=timeout, settings=settings)


def _assert_limit(error: dict[str, Any] | None, limit: str, setting: str, value: float) -> None:
    assert error is not None
    assert error["code"] == "resource_limit", error
    assert error["detail"] == {"limit": limit, "setting": setting, "value": value}
    assert setting in error["message"]
    shown = json.dumps(error)
    assert "/" not in shown and "Traceback" not in shown, shown


def test_a_model_allocating_4_tb_fails_on_the_memory_limit_naming_its_setting(tmp_path: Path) -> None:
    settings = Settings(sandbox_memory_bytes=3 * 1024**3)
    result = _run_job(tmp_path, bomb_model(tmp_path / "bomb.onnx"), settings)
    _assert_limit(result.error, "memory", "SHRINK_SANDBOX_MEMORY_BYTES", 3 * 1024**3)
    assert "Traceback" in result.log_tail  # kept for the server's log, and only there


def test_a_slow_model_fails_on_a_one_second_cpu_limit(tmp_path: Path) -> None:
    result = _run_job(tmp_path, slow_model(tmp_path / "slow.onnx"), Settings(sandbox_cpu_seconds=1))
    _assert_limit(result.error, "cpu_time", "SHRINK_SANDBOX_CPU_SECONDS", 1)


def test_a_run_past_its_wall_clock_time_fails_on_the_job_time_limit(tmp_path: Path) -> None:
    result = _run_job(tmp_path, slow_model(tmp_path / "slow.onnx"), Settings(), timeout=2)
    assert result.timed_out
    _assert_limit(result.error, "wall_time", "SHRINK_JOB_SOFT_TIME_LIMIT_SECONDS", 2)


def test_a_job_writing_past_the_file_size_limit_fails_on_it(tmp_path: Path) -> None:
    result = _run_job(tmp_path, plain_model(tmp_path / "plain.onnx"), Settings(sandbox_file_bytes=200_000))
    _assert_limit(result.error, "file_size", "SHRINK_SANDBOX_FILE_BYTES", 200_000)


def test_an_upload_whose_inspection_passes_the_file_size_limit_is_refused_with_413(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.catalog.service import inspect_upload

    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(plain_model(tmp_path / "plain.onnx"), "model.onnx")
    monkeypatch.setenv("SHRINK_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SHRINK_SANDBOX_FILE_BYTES", "200000")
    clear_caches()
    try:
        (tmp_path / "var" / "work").mkdir(parents=True)
        with pytest.raises(ShrinkError) as refused:
            inspect_upload("model", archive)
    finally:
        clear_caches()
    assert refused.value.status == 413
    _assert_limit({"code": refused.value.code, "message": refused.value.message, "detail": refused.value.detail},
                  "file_size", "SHRINK_SANDBOX_FILE_BYTES", 200_000)


@pytest.mark.parametrize(("exc", "limit"), [
    (MemoryError(), "memory"),
    (OSError(errno.EFBIG, "File too large"), "file_size"),
    (RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Failed to allocate memory for requested buffer of size 4398046511104"), "memory"),
    (ValueError("bad shape"), None),
])
def test_the_engine_classifies_allocation_and_file_size_failures(exc: BaseException, limit: str | None) -> None:
    assert resource_limit_hit(exc) == limit
    try:
        try:
            raise exc
        except BaseException as inner:
            raise ValueError("could not load the model") from inner
    except ValueError as wrapped:
        assert resource_limit_hit(wrapped) == limit


def test_a_failed_jobs_error_keeps_no_log_tail_nor_server_path() -> None:
    error = _job_error({"code": "engine_internal", "message": "KeyError: '/srv/shrink/work/job_1/attempt-1/x'",
                        "detail": {"log_tail": "Traceback (most recent call last):\n  File \"/srv/x.py\""}, "user_error": False})
    assert error["code"] == "engine_internal" and error["detail"] == {}
    assert "/" not in json.dumps(error) and "Traceback" not in json.dumps(error)


def test_progress_and_log_lines_from_the_engine_name_no_server_path(monkeypatch: pytest.MonkeyPatch) -> None:
    read_fd, write_fd = os.pipe()
    monkeypatch.setenv("SHRINK_EVENTS_FD", str(write_fd))
    emit = _emit_to_fd()
    emit({"type": "event", "event": "pass_skipped", "reason": "no weights in /srv/shrink/work/job_1/model.onnx", "count": 2})
    os.close(write_fd)
    with os.fdopen(read_fd) as stream:
        line = json.loads(stream.readline())
    assert line["count"] == 2 and "/" not in line["reason"] and "a file of the job" in line["reason"]


def test_a_job_that_allocates_4_tb_fails_through_the_service_with_resource_limit(tmp_path: Path) -> None:
    env = {"SHRINK_ENV": "test", "SHRINK_DATA_DIR": str(tmp_path / "var"), "SHRINK_SANDBOX_MEMORY_BYTES": str(3 * 1024**3)}
    with ServiceStack(env, tmp_path) as stack:
        client = stack.new_tenant()
        model = stack.upload(client, bomb_model(tmp_path / "bomb.onnx"))
        assert model.status_code == 201, model.text
        submitted = client.post("/v1/jobs", json={"model_id": model.json()["id"], "recipe": [{"op": "quantize", "method": "dynamic"}],
                                                  "benchmark": FAST_BENCH})
        assert submitted.status_code == 202, submitted.text
        job = stack.wait_job(client, submitted.json()["id"], timeout=90)
        assert job["state"] == "failed", job
        _assert_limit(job["error"], "memory", "SHRINK_SANDBOX_MEMORY_BYTES", 3 * 1024**3)
        logs = stack.log_tail(200_000)
        assert "job.engine_failed" in logs and job["id"] in logs  # the traceback is the operator's
