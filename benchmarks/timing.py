"""Pure helpers for timings: percentiles, and the median and spread of a figure over several runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(milliseconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 and mean of one run's per-call times, in milliseconds."""
    summary = {f"p{q}_ms": round(percentile(milliseconds, q), 3) for q in PERCENTILES}
    summary["mean_ms"] = round(statistics.fmean(milliseconds), 3)
    summary["count"] = len(milliseconds)
    return summary


def across_runs(runs: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Each numeric figure of several runs as its median, with the min and max as the spread."""
    if not runs:
        raise ValueError("no runs")
    merged: dict[str, Any] = {}
    for key in runs[0]:
        values = [float(run[key]) for run in runs]
        merged[key] = round(statistics.median(values), 3)
        merged[f"{key}_spread"] = [round(min(values), 3), round(max(values), 3)]
    merged["runs"] = len(runs)
    return merged


def time_calls(call: Callable[[Any], object], inputs: Sequence[Any]) -> list[float]:
    """Milliseconds taken by `call(x)` for each input, one call at a time."""
    times = []
    for item in inputs:
        started = time.perf_counter()
        call(item)
        times.append((time.perf_counter() - started) * 1000)
    return times
