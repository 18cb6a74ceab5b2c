"""What the CPU running the engine can do, as far as compression choices and reports care."""

from __future__ import annotations

import platform
from functools import cache
from typing import Any

REPORTED_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "amx_bf16", "amx_int8", "asimd", "asimddp", "sve",
)  # fmt: skip
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@cache
def _flags() -> tuple[str | None, frozenset[str]]:
    try:
        with open("/proc/cpuinfo") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return platform.processor() or None, frozenset()
    model_line = next((ln for ln in lines if ln.startswith(("model name", "Model"))), "")
    flags_line = next((ln for ln in lines if ln.startswith(("flags", "Features"))), "")
    return model_line.split(":", 1)[-1].strip() or None, frozenset(flags_line.split(":", 1)[-1].split())


def cpu_info() -> dict[str, Any]:
    model, flags = _flags()
    return {"cpu": model, "cpu_flags": [f for f in REPORTED_FLAGS if f in flags]}


def x86_int8_saturates() -> bool:
    """True on an x86 CPU without a VNNI/AMX int8 dot product.

    There onnxruntime's u8s8 int8 kernels multiply with ``vpmaddubsw``, which adds pairs of
    uint8 x int8 products into int16 and saturates (255 * 127 * 2 > 32767): measured on MiniLM-L6
    (AMD EPYC, AVX2), dynamic int8 with the outlier split fell to cosine 0.979, and to 0.996 with
    7-bit weights (``reduce_range``), which cannot overflow (255 * 63 * 2 < 32767)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    _, flags = _flags()
    return bool(flags) and not any(f in flags for f in INT8_DOT_FLAGS)
