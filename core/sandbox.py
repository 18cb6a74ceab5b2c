"""Run the engine in a child process with limits (docs/architecture.md, sandbox).

The child gets: memory (address space), CPU-time and file-size limits; an environment with no
credentials (no database URL, no S3 keys: only what Python and the libraries need, offline);
its own work folder as HOME and TMPDIR; its own process group, so cancel and timeout kill all of
it; and a parent-death signal, so it dies with a SIGKILLed worker.

Progress arrives as JSON lines on a dedicated pipe (stdout carries whatever libraries print); the
result is the last marked line of stdout (engine/cli.py).

A run that hits a limit fails with code ``resource_limit``, naming the limit and the setting that
raises it. The engine's log (tracebacks, library noise) is the caller's to log; it is never part
of an error a user reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
RESULT_MARKER = "@@shrink-result@@"  # engine/cli.py writes the same marker
# Variables passed through to the child; everything else (credentials included) is dropped.
PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")


@dataclass
class SandboxResult:
    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None
    returncode: int | None = None
    canceled: bool = False
    timed_out: bool = False
    log_tail: str = ""  # for the server's log only: tracebacks name server paths


# Each limit: the setting that raises it.
LIMIT_SETTINGS = {
    "memory": "SHRINK_SANDBOX_MEMORY_BYTES",
    "cpu_time": "SHRINK_SANDBOX_CPU_SECONDS",
    "file_size": "SHRINK_SANDBOX_FILE_BYTES",
}
LIMIT_WORDS = {"memory": "memory", "cpu_time": "CPU time", "wall_time": "time", "file_size": "file size"}
# Seen in the log of a child that died without a result: an allocation that failed in C or C++.
_MEMORY_MARKERS = ("MemoryError", "std::bad_alloc", "Failed to allocate memory", "Cannot allocate memory", "can't allocate memory")


def resource_limit_error(limit: str, settings: Settings, *, timeout: float | None = None) -> dict[str, Any]:
    """The error of a run that hit ``limit`` ("memory", "cpu_time", "wall_time", "file_size")."""
    if limit == "wall_time":
        setting = _timeout_setting(timeout, settings)
        value: float | int | None = timeout
    else:
        setting = LIMIT_SETTINGS[limit]
        value = {"memory": settings.sandbox_memory_bytes, "cpu_time": settings.sandbox_cpu_seconds,
                 "file_size": settings.sandbox_file_bytes}[limit]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    shown = f"{value} s" if limit in ("cpu_time", "wall_time") else f"{value} bytes"
    return {
        "code": "resource_limit",
        "message": f"the engine hit its {LIMIT_WORDS[limit]} limit ({shown}); "
                   f"raise {setting} on the server, or use a smaller model, dataset or recipe",
        "detail": {"limit": limit, "setting": setting, "value": value},
    }


def _timeout_setting(timeout: float | None, settings: Settings) -> str:
    """The setting a caller's wall-clock timeout came from."""
    if timeout == settings.inspect_timeout_seconds:
        return "SHRINK_INSPECT_TIMEOUT_SECONDS"
    return "SHRINK_JOB_SOFT_TIME_LIMIT_SECONDS"


def child_environment(work_dir: Path, settings: Settings) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ}
    tmp = work_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "HOME": str(work_dir),
            "TMPDIR": str(tmp),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HOME": str(work_dir / "hf"),
            "TORCHAO_FORCE_SKIP_LOADING_SO_FILES": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    if settings.sandbox_threads:
        env["OMP_NUM_THREADS"] = str(settings.sandbox_threads)
        env["SHRINK_ENGINE_THREADS"] = str(settings.sandbox_threads)
    return env


def run_engine(
    args: list[str],
    *,
    work_dir: Path,
    timeout: float,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    cancel_grace_seconds: float = 10.0,
    settings: Settings | None = None,
) -> SandboxResult:
    settings = settings or get_settings()
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "engine.log"
    read_fd, write_fd = os.pipe()
    env = child_environment(work_dir, settings)
    env["SHRINK_EVENTS_FD"] = str(write_fd)
    argv = [
        sys.executable,
        "-m",
        "core.sandbox_child",
        str(settings.sandbox_memory_bytes),
        str(settings.sandbox_cpu_seconds),
        str(settings.sandbox_file_bytes),
        "--",
        *args,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=work_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            start_new_session=True,
            close_fds=True,
        )
    os.close(write_fd)
    reader = threading.Thread(target=_read_events, args=(read_fd, on_event), daemon=True)
    reader.start()

    deadline = time.monotonic() + timeout
    canceled = timed_out = False
    cancel_sent_at: float | None = None
    cpu_used = 0.0
    while True:
        # wait4, not poll: the child's CPU time tells a CPU-limit SIGKILL from any other.
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: no CPU time to read
            proc.returncode = proc.poll()
            break
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu_used = usage.ru_utime + usage.ru_stime
            break
        time.sleep(0.2)
        now = time.monotonic()
        if not canceled and should_cancel is not None and should_cancel():
            canceled = True
            cancel_sent_at = now
            (work_dir / "CANCEL").touch()  # cooperative: the engine stops between passes
        if canceled and cancel_sent_at is not None and now - cancel_sent_at > cancel_grace_seconds:
            _kill_group(proc)  # forceful: within a pass
        if now > deadline and not timed_out:
            timed_out = True
            _kill_group(proc)
    reader.join(timeout=5)

    text = log_path.read_text(errors="replace")
    tail = text[-4000:]
    payload = None
    for line in reversed(text.splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                payload = json.loads(line[len(RESULT_MARKER) :])
            except ValueError:
                payload = None
            break
    if canceled:
        return SandboxResult(ok=False, canceled=True, returncode=proc.returncode, log_tail=tail,
                             error={"code": "canceled", "message": "the job was canceled"})
    if timed_out:
        return SandboxResult(ok=False, timed_out=True, returncode=proc.returncode, log_tail=tail,
                             error=resource_limit_error("wall_time", settings, timeout=timeout))
    if payload is None:
        limit = _limit_of_death(proc.returncode, cpu_used, text, settings)
        if limit is not None:
            return SandboxResult(ok=False, returncode=proc.returncode, log_tail=tail,
                                 error=resource_limit_error(limit, settings))
        reason = _describe_exit(proc.returncode)
        return SandboxResult(ok=False, returncode=proc.returncode, log_tail=tail,
                             error={"code": "engine_crashed", "message": f"the engine process died ({reason})",
                                    "detail": {"returncode": proc.returncode}})
    if payload.get("ok"):
        return SandboxResult(ok=True, result=payload.get("result"), returncode=proc.returncode, log_tail=tail)
    error = payload.get("error") or {}
    if error.get("code") == "resource_limit":
        # The engine knows which limit it hit; the service knows the setting that raises it.
        limit = str((error.get("detail") or {}).get("limit", "memory"))
        error = resource_limit_error(limit if limit in LIMIT_SETTINGS else "memory", settings)
    return SandboxResult(ok=False, error=error, returncode=proc.returncode, log_tail=tail)


def _limit_of_death(returncode: int | None, cpu_used: float, log_text: str, settings: Settings) -> str | None:
    """The limit a child that died without a result ran into, if the signs say so."""
    if returncode is None or returncode >= 0:
        crashed_on_allocation = returncode not in (0, None) and any(m in log_text[-20000:] for m in _MEMORY_MARKERS)
        return "memory" if crashed_on_allocation else None
    sig = -returncode
    if sig == signal.SIGXCPU:
        return "cpu_time"
    if sig == signal.SIGXFSZ:
        return "file_size"
    cpu_limit = settings.sandbox_cpu_seconds
    if sig == signal.SIGKILL and cpu_limit > 0 and cpu_used >= cpu_limit - 0.5:
        return "cpu_time"  # past the soft limit's SIGXCPU, the hard limit kills
    if sig == signal.SIGKILL:
        return "memory"  # nothing of ours sent it: the kernel's out-of-memory killer
    if sig in (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS) and any(m in log_text[-20000:] for m in _MEMORY_MARKERS):
        return "memory"  # an allocation failed in C++ (std::bad_alloc -> abort)
    return None


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        sig = signal.Signals(-code).name
        return f"{sig}"
    return f"exit code {code}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _read_events(fd: int, on_event: Callable[[dict[str, Any]], None] | None) -> None:
    with os.fdopen(fd, "r", errors="replace") as stream:
        for line in stream:
            if on_event is None:
                continue
            try:
                message = json.loads(line)
            except ValueError:
                continue
            with contextlib.suppress(Exception):  # a failing progress sink must not kill the job
                on_event(message)
