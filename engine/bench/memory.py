"""Peak memory of running one model, measured in a child process of its own.

    python -m engine.bench.memory REQUEST.json

Why a child: the benchmark process holds every model at once, the runtimes' arenas and the
Python heap of the whole job, so its peak says nothing about one model. A fresh interpreter that
imports the runtime, loads one model and runs it tells what that model costs to serve.

Why ``VmHWM`` (``/proc/self/status``) and not ``ru_maxrss``: Linux carries ``ru_maxrss`` across
``exec``, so a child forked from a large parent can report the parent's peak. ``VmHWM`` belongs
to the child's own address space. Batch sizes run in increasing order, and the high-water mark is
read after each: the peak after batch size b is the peak of a process that ran up to b, which is
what serving at b costs (smaller batches need less).

The inputs travel as ``.npz`` files written by the parent and read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from engine.model import ModelFile

RESULT_MARKER = "@@shrink-memory@@"
METHOD = "own child process per model; peak resident set (VmHWM) after each batch size"


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _rss() -> int:
    value = _status_bytes("VmRSS")
    if value is not None:
        return value
    import psutil

    return int(psutil.Process().memory_info().rss)


def _peak() -> int:
    value = _status_bytes("VmHWM")
    if value is not None:
        return value
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def measure_peak_memory(
    model: ModelFile,
    feeds_by_batch: dict[int, dict[str, np.ndarray]],
    *,
    runtime: str | None,
    device: str,
    threads: int,
    runs: int = 3,
    timeout_seconds: float = 600,
) -> dict[str, Any]:
    """Run ``model`` in a fresh child on each batch of ``feeds_by_batch`` and report its memory.
    Never raises: a failure is reported in ``error`` (the latency numbers still stand)."""
    with tempfile.TemporaryDirectory(prefix="shrink-mem-") as tmp:
        folder = Path(tmp)
        request: dict[str, Any] = {
            "model_path": str(model.path),
            "format": model.format,
            "runtime": runtime,
            "device": device,
            "threads": threads,
            "runs": runs,
            "feeds": [],
        }
        for batch_size in sorted(feeds_by_batch):
            path = folder / f"feeds-{batch_size}.npz"
            np.savez(path, **feeds_by_batch[batch_size])
            request["feeds"].append({"batch_size": batch_size, "path": str(path)})
        request_path = folder / "request.json"
        request_path.write_text(json.dumps(request))
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "engine.bench.memory", str(request_path)],
                capture_output=True,
                text=True,
                timeout=timeout_seconds,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"method": METHOD, "error": f"the memory run took over {timeout_seconds:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return {"method": METHOD, **json.loads(line[len(RESULT_MARKER) :])}
    tail = (done.stderr or done.stdout)[-800:]
    return {"method": METHOD, "error": f"the memory run failed (exit {done.returncode}): {tail}"}


def _child(request: dict[str, Any]) -> dict[str, Any]:
    from engine.bench.runners import make_runner

    runtime = request["runtime"]
    device = request["device"]
    if request["format"] == "onnx" and runtime != "torch":
        import onnxruntime  # noqa: F401 - the runtime's own footprint belongs to "idle"
    else:
        import torch  # noqa: F401
    idle = _rss()
    model = ModelFile(path=Path(request["model_path"]), format=request["format"])
    runner = make_runner(model, threads=request["threads"], device=device, runtime=runtime)
    loaded = _rss()
    cuda_torch = device == "cuda" and hasattr(runner, "torch_call")
    out: dict[str, Any] = {
        "idle_rss_bytes": idle,
        "loaded_rss_bytes": loaded,
        "model_rss_bytes": max(0, loaded - idle),
        "peak_rss_bytes": {},
        "peak_above_idle_bytes": {},
    }
    for item in request["feeds"]:
        with np.load(item["path"], allow_pickle=False) as npz:
            feeds = {k: npz[k] for k in npz.files}
        if cuda_torch:
            import torch

            torch.cuda.reset_peak_memory_stats()
        for _ in range(max(1, int(request["runs"]))):
            runner.run(feeds)
        key = str(item["batch_size"])
        peak = _peak()
        out["peak_rss_bytes"][key] = peak
        out["peak_above_idle_bytes"][key] = max(0, peak - idle)
        if cuda_torch:
            import torch

            out.setdefault("device_peak_bytes", {})[key] = int(torch.cuda.max_memory_allocated())
    return out


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    result = _child(request)
    sys.stdout.write("\n" + RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
