"""Benchmark output: JSON record, Markdown tables, PNG plots, and the check against expected figures."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semsearch.errors import SemsearchError

_HERE = Path(__file__).resolve().parent
EXPECTED_DIR = _HERE / "expected"
RESULTS_DIR = _HERE / "results"
RESULTS_MD = _HERE / "RESULTS.md"


class ExpectedFiguresError(SemsearchError):
    """The expected-figures file is missing or malformed."""


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def describe_environment(record: Mapping[str, Any]) -> str:
    env = record["environment"]
    hw = env["hardware"]
    threads = env["threads"]
    return (
        f"{env['started_at']}, {hw['cpu']}, {hw['usable_cores']} usable cores, commit {env['commit']}; "
        f"threads: setting {threads['setting']}, torch {threads.get('torch', '-')}, faiss {threads['faiss_omp']}, "
        f"OpenBLAS {threads.get('OPENBLAS_NUM_THREADS')}; seed {record.get('seed')}."
    )


def write_outputs(
    out_dir: Path,
    name: str,
    record: Mapping[str, Any],
    body: str,
    plot: Callable[[Path], None] | None,
) -> list[Path]:
    """Write NAME.json, NAME.md and NAME.png (when there is a plot) into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path = out_dir / f"{name}.md"
    command = " ".join(record["command"])
    md_path.write_text(
        f"## {name}\n\n`{command}`\n\n{describe_environment(record)}\n\n{body.strip()}\n", encoding="utf-8"
    )
    written = [json_path, md_path]
    if plot is not None:
        png_path = out_dir / f"{name}.png"
        plot(png_path)
        written.append(png_path)
    return written


def new_figure(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    # A fixed timestamp keeps the PNG identical for identical figures.
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


# --- check mode ---------------------------------------------------------------------------------


CALIBRATION_TOLERANCE_PCT = 25  # a fp32 calibration this far apart is another machine, or the same one in a slow phase


@dataclass(frozen=True)
class CheckLine:
    path: str
    expected: float
    actual: float | None
    allowed: str
    ok: bool
    skipped: bool = False

    def __str__(self) -> str:
        actual = "missing" if self.actual is None else f"{self.actual:g}"
        status = "SKIP" if self.skipped else "OK  " if self.ok else "FAIL"
        reason = ", not compared: measured on another machine" if self.skipped else ""
        return f"{status} {self.path}: {actual} (expected {self.expected:g}, {self.allowed}{reason})"


def machine_difference(here: Mapping[str, Any] | None, there: Mapping[str, Any] | None) -> str | None:
    """Why two machine records (see `semsearch.benchmarks.environment.machine`) are not alike, or None when they are:
    same CPU model, speed flags and cores, and fp32 calibrations within CALIBRATION_TOLERANCE_PCT."""
    if not here or not there:
        return "the expected figures name no machine" if not there else "this run records no machine"
    for key in ("cpu", "flags", "usable_cores"):
        if here.get(key) != there.get(key):
            return f"{key} {here.get(key)!r} here, {there.get(key)!r} there"
    ours, theirs = here.get("calibration_fp32_gflops"), there.get("calibration_fp32_gflops")
    if not isinstance(ours, int | float) or not isinstance(theirs, int | float) or theirs <= 0:
        return "no fp32 calibration on one side"
    if abs(ours - theirs) > theirs * CALIBRATION_TOLERANCE_PCT / 100:
        return f"fp32 calibration {ours:g} GFLOP/s here, {theirs:g} there"
    return None


def lookup(record: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path such as `modes.dense.ndcg@10` or `sizes.2.rows.0.recall@10`
    (keys may contain '@' but not '.'; a number indexes a list)."""
    value: Any = record
    for key in path.split("."):
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def check_figures(record: Mapping[str, Any], expected: Mapping[str, Any]) -> list[CheckLine]:
    """Compare each expected figure with the run's.

    An entry is `{"path", "expected", "tolerance"}` (absolute) or `{"path", "expected", "tolerance_pct"}`
    (relative), with an optional `"better": "higher" | "lower"` that fails only in the worse direction.
    An entry with `"scope": "machine"` (an absolute speed, or a ratio that is a property of the CPU) is only
    compared when this run's machine is alike the expected file's `"machine"`; elsewhere it is a SKIP.
    """
    here = lookup(record, "environment.machine")
    other_machine = machine_difference(here, expected.get("machine")) is not None
    lines = []
    for entry in expected.get("figures", []):
        try:
            path, target = str(entry["path"]), float(entry["expected"])
            if "tolerance_pct" in entry:
                margin = abs(target) * float(entry["tolerance_pct"]) / 100
                allowed = f"±{entry['tolerance_pct']}%"
            else:
                margin = float(entry["tolerance"])
                allowed = f"±{margin:g}"
        except (KeyError, TypeError, ValueError) as exc:
            raise ExpectedFiguresError(f"Malformed expected figure {entry!r}: {exc}") from None
        scope = entry.get("scope", "run")
        if scope not in ("run", "machine"):
            raise ExpectedFiguresError(f'Malformed expected figure {entry!r}: scope is "run" or "machine"')
        better = entry.get("better")
        if better == "higher":
            allowed = f"at least {target - margin:g}"
        elif better == "lower":
            allowed = f"at most {target + margin:g}"
        raw = lookup(record, path)
        actual = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
        if scope == "machine" and other_machine:
            lines.append(CheckLine(path, target, actual, allowed, ok=True, skipped=True))
            continue
        if actual is None or math.isnan(actual):
            ok = False
        elif better == "higher":
            ok = actual >= target - margin
        elif better == "lower":
            ok = actual <= target + margin
        else:
            ok = abs(actual - target) <= margin
        lines.append(CheckLine(path, target, actual, allowed, ok))
    return lines


def load_expected(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExpectedFiguresError(f"No expected figures at {path}; write one from a run's JSON first") from None
    except json.JSONDecodeError as exc:
        raise ExpectedFiguresError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("figures"), list):
        raise ExpectedFiguresError(f'{path} must be an object with a "figures" list')
    return data
