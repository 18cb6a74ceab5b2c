"""First code of the sandboxed child: apply the limits, then exec the engine.

Runs as ``python -m core.sandbox_child MEM CPU FSIZE -- engine-args...`` (stdlib only). Limits are
set here rather than in a ``preexec_fn``, which is unsafe in a threaded parent (the Celery worker).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    memory, cpu, fsize = (int(v) for v in sys.argv[1:4])
    assert sys.argv[4] == "--"
    parent = os.getppid()
    # Die with the worker: a SIGKILLed worker must not leave an engine running unsupervised.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, fsize)):
        if value > 0:
            resource.setrlimit(limit, (value, value))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.execv(sys.executable, [sys.executable, "-m", "engine.cli", *sys.argv[5:]])


if __name__ == "__main__":
    main()
