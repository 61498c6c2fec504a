"""Measured plans, cached per model and machine in the model cache (`SEMSEARCH_MODEL_CACHE/plan-KEY.json`).

The key is everything a plan's speed depends on: the model's fingerprint and export revision, onnxruntime's
version, the CPU (model, flags, usable cores), the thread setting and the planner's own revision. A file is
written under a lock to a temporary name and renamed, so concurrent first uses measure once; a file that cannot
be read as a plan record of this key is ignored, and the plan is measured again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from secrets import token_hex
from typing import Any

from semsearch.index.model.export.onnx_export import EXPORT_REVISION
from semsearch.index.model.planning.cpu import cpu_fingerprint
from semsearch.index.model.planning.plan import Plan

# The planner's recipe (candidates, probe, rules): a new one measures again.
PLANNER_REVISION = 1


def plan_key(model: str, fingerprint: str, threads: int, cpu: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a measured plan holds for: another value of any of these measures again. `cpu` stands in for this
    machine's CPU fingerprint (tests)."""
    try:
        runtime = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        runtime = "not installed"
    return {
        "planner_revision": PLANNER_REVISION,
        "model": model,
        "fingerprint": fingerprint,
        "export_revision": EXPORT_REVISION,
        "onnxruntime": runtime,
        **(cpu if cpu is not None else cpu_fingerprint()),
        "threads": threads,
    }


def cache_file(cache: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache / f"plan-{digest}.json"


@dataclass(frozen=True)
class PlanRecord:
    """One planning run: the plan of each backend it measured, the backend `auto` takes, and every figure."""

    key: dict[str, Any]
    # The backends measured; `auto` is true when that was every ONNX backend, each checked against the gate.
    backends: tuple[str, ...]
    auto: bool
    chosen: str
    plans: dict[str, Plan]
    gate: dict[str, dict[str, Any]] = field(default_factory=dict)
    measurements: list[dict[str, Any]] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    planned_at: str = ""
    seconds: float = 0.0
    export_seconds: float = 0.0
    complete: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "backends": list(self.backends),
            "auto": self.auto,
            "chosen": self.chosen,
            "plans": {backend: plan.to_dict() for backend, plan in self.plans.items()},
            "gate": self.gate,
            "measurements": self.measurements,
            "probe": self.probe,
            "planned_at": self.planned_at,
            "seconds": self.seconds,
            "export_seconds": self.export_seconds,
            "complete": self.complete,
        }

    @classmethod
    def from_dict(cls, data: Any) -> PlanRecord:
        """The record read back; ValueError (or TypeError) when `data` is not one."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        plans = {str(b): Plan.from_dict(p) for b, p in dict(data["plans"]).items()}
        record = cls(
            key=dict(data["key"]),
            backends=tuple(str(b) for b in data["backends"]),
            auto=bool(data["auto"]),
            chosen=str(data["chosen"]),
            plans=plans,
            gate=dict(data.get("gate", {})),
            measurements=list(data.get("measurements", [])),
            probe=dict(data.get("probe", {})),
            planned_at=str(data.get("planned_at", "")),
            seconds=float(data.get("seconds", 0.0)),
            export_seconds=float(data.get("export_seconds", 0.0)),
            complete=bool(data.get("complete", True)),
        )
        if record.chosen not in plans or set(record.backends) != set(plans):
            raise ValueError("the chosen backend or a measured one has no plan")
        if any(plan.backend != backend for backend, plan in plans.items()):
            raise ValueError("a plan is filed under another backend")
        return record


def read_record(path: Path, key: dict[str, Any]) -> tuple[PlanRecord | None, str | None]:
    """The record at `path` if it is one for `key`, and why it was ignored when it is there but unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path} ({exc})"
    try:
        record = PlanRecord.from_dict(json.loads(text))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return None, f"{path} is not a plan record ({type(exc).__name__}: {exc})"
    if record.key != key:
        return None, f"{path} holds a plan for another model or machine"
    return record, None


def write_record(path: Path, record: PlanRecord) -> None:
    """Write `record` to `path` whole or not at all (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{token_hex(4)}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def planning_lock(path: Path) -> Iterator[None]:
    """Held while one process measures the plan at `path`; a second one waits, then reads what it wrote. A
    cache folder that cannot be written takes no lock: each process measures for itself."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = path.with_suffix(".lock").open("a")
    except OSError:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
