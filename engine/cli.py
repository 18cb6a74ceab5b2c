"""The engine's process boundary: the worker and the API call these in a sandboxed child.

    python -m engine.cli inspect-model FILE WORK_DIR
    python -m engine.cli inspect-dataset FILE
    python -m engine.cli capabilities
    python -m engine.cli run-job REQUEST.json

Each prints one JSON document on stdout: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"code", "message", "detail", "user_error"}}``. Progress of ``run-job``
goes as JSON lines to the file descriptor named by ``SHRINK_EVENTS_FD`` (stdout may carry the
noise libraries print).
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any

RESULT_MARKER = "@@shrink-result@@"


# Allocation failures that libraries report in their own words rather than as MemoryError
# (onnxruntime's C++ std::bad_alloc, torch's CPU allocator, numpy's ArrayMemoryError is a
# MemoryError already).
_ALLOCATION_FAILURES = ("bad_alloc", "failed to allocate memory", "can't allocate memory", "cannot allocate memory", "out of memory")


def _emit_to_fd() -> Any:
    fd = os.environ.get("SHRINK_EVENTS_FD")
    if not fd:
        return lambda message: None
    from engine.formats.redact import path_free

    stream = os.fdopen(int(fd), "w", buffering=1)

    def emit(message: dict[str, Any]) -> None:
        # Progress and log lines are shown to the user: no sandbox path in them.
        clean = {k: path_free(v, name="a file of the job") if isinstance(v, str) else v for k, v in message.items()}
        stream.write(json.dumps(clean, default=str) + "\n")

    return emit


def _main(argv: list[str]) -> Any:
    command = argv[0] if argv else ""
    if command == "capabilities":
        from engine.bench.config import BenchmarkConfig
        from engine.registry import capabilities
        from engine.search.space import search_capabilities

        return {**capabilities(), "benchmark_schema": BenchmarkConfig.model_json_schema(), "search": search_capabilities()}
    if command == "inspect-model":
        from engine.formats.detect import open_model

        _, info = open_model(Path(argv[1]), Path(argv[2]))
        return info
    if command == "inspect-dataset":
        from engine.data import inspect_dataset

        return inspect_dataset(Path(argv[1]))
    if command == "run-job":
        from engine.job import JobRequest, run_job

        request = JobRequest.model_validate_json(Path(argv[1]).read_text())
        return run_job(request, _emit_to_fd())
    raise SystemExit(f"unknown command {command!r}; see the module docstring")


def resource_limit_hit(exc: BaseException) -> str | None:
    """Which sandbox limit ``exc`` (or an exception it wraps) comes from: "memory", "file_size"
    or None. The sandbox names the setting that raises it (core/sandbox.py)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError):
            return "memory"
        if isinstance(current, OSError) and current.errno == errno.EFBIG:
            return "file_size"  # RLIMIT_FSIZE: Python ignores SIGXFSZ, so the write fails instead
        if isinstance(current, OSError) and current.errno == errno.ENOMEM:
            return "memory"
        text = str(current).lower()
        if any(marker in text for marker in _ALLOCATION_FAILURES):
            return "memory"
        if "file too large" in text:
            return "file_size"
        current = current.__cause__ or current.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    from engine.job import error_payload

    try:
        result = _main(list(sys.argv[1:] if argv is None else argv))
        payload = {"ok": True, "result": result}
        code = 0
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a JSON error
        import traceback

        # The traceback goes to the sandbox's log, which the worker logs; never to the user.
        traceback.print_exc(file=sys.stderr)
        limit = resource_limit_hit(exc)
        if limit is not None:
            error = {"code": "resource_limit", "message": f"the engine ran out of its {limit} limit",
                     "detail": {"limit": limit}, "user_error": True}
        else:
            error = error_payload(exc)
        payload = {"ok": False, "error": error}
        code = 1
    # The marker separates our document from whatever libraries printed on stdout.
    sys.stdout.write("\n" + RESULT_MARKER + json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
