"""The CPU an engine runs on, as far as speed goes: its model, speed-relevant flags and usable cores.

One place for both users: the planner keys its cached plans on it, and benchmarks record it with every figure.
"""

from __future__ import annotations

import os
import platform

# The instruction-set extensions that decide which kernels onnxruntime, FAISS and BLAS pick.
SPEED_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve", "i8mm", "bf16",
)  # fmt: skip
_CPUINFO = "/proc/cpuinfo"


def cpu_model() -> str:
    try:
        with open(_CPUINFO, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU's speed-relevant flags, as /proc/cpuinfo names them (x86 `flags`, ARM `Features`)."""
    try:
        with open(_CPUINFO, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in SPEED_FLAGS if flag in present]
    except OSError:
        pass
    return []


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_fingerprint() -> dict[str, str | int | list[str]]:
    """What makes two CPUs run a model at different speeds: model name, speed flags, usable cores."""
    return {"cpu": cpu_model(), "machine": platform.machine(), "flags": cpu_flags(), "cores": usable_cores()}
