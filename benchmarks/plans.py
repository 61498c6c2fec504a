"""The planner's choice against every plan it could have chosen, measured on the same probe set in one run.

The planner runs afresh first (in a scratch model cache that links to the converted models, so its first-use
cost is measured now, without the one-time conversion). Then every combination of backend, layout and
batching that the planner searches is timed in alternating rounds on the same probe, the planner's choice and
the plan this machine has cached among them; the ratio says how close the choice came to the fastest plan
that passes the gate.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from semsearch.index.model.embedder import configured_model
from semsearch.index.model.export.onnx_export import ONNX_BACKENDS, cached_model
from semsearch.index.model.onnx_runtime import OnnxEncoder
from semsearch.index.model.planning.measure import PROBE_PASSAGES, PROBE_QUERIES, probe_set, time_batches
from semsearch.index.model.planning.plan import Plan
from semsearch.index.model.planning.planner import BATCHINGS, Planner, layouts
from semsearch.settings import Settings


def batch_part(plan: Plan) -> Plan:
    """What decides a plan's speed at batches (the query fields set alike)."""
    return plan.replace(query_threads=1, micro="split")


def measure_plans(settings: Settings, rounds: int = 3, passages: int = PROBE_PASSAGES) -> dict[str, Any]:
    model = configured_model(settings)
    probe = probe_set(passages, min(PROBE_QUERIES, max(3, passages // 2)))
    planner = Planner(probe=probe, progress=lambda line: None)
    files = {b: cached_model(model.path, model.fingerprint, b, settings.model_cache) for b in ONNX_BACKENDS}
    with tempfile.TemporaryDirectory() as scratch:
        for path in files.values():
            (Path(scratch) / path.parent.name).symlink_to(path.parent, target_is_directory=True)
        started = time.perf_counter()
        fresh = planner.record(settings.replace(model_cache=Path(scratch)), model, ONNX_BACKENDS)
        first_use = time.perf_counter() - started
    if fresh is None:
        raise RuntimeError("the planner could not measure a plan")
    cached = Planner().record(settings, model, ONNX_BACKENDS)  # what this machine's builds run (measured if none)
    threads = max(1, settings.threads)
    grid = [
        Plan(b, lanes, each, rows, tokens, 1, "split")
        for b in ONNX_BACKENDS
        for lanes, each in layouts(threads)
        for rows, tokens in BATCHINGS
    ]
    choices = {"fresh": batch_part(fresh.plans[fresh.chosen])}
    if cached is not None:
        choices["cached"] = batch_part(cached.plans[cached.chosen])
    grid += [plan for plan in choices.values() if plan not in grid]
    encoders: dict[tuple[str, int, int], OnnxEncoder] = {}
    ids: list[Any] = []
    times: dict[Plan, list[float]] = {plan: [] for plan in grid}
    for round_no in range(max(1, rounds)):
        for plan in grid if round_no % 2 == 0 else reversed(grid):  # alternate, so a slow phase hits all alike
            key = (plan.backend, plan.lanes, plan.lane_threads)
            if key not in encoders:
                encoders[key] = OnnxEncoder(
                    files[plan.backend], model.path, model.max_seq_length, threads, plan.lanes, plan.lane_threads, 1
                )
                ids = ids or encoders[key].tokenize(probe.passages)
                time_batches(encoders[key], ids[: 2 * plan.lanes], 1, 0)  # warm-up
            times[plan].append(time_batches(encoders[key], ids, plan.rows, plan.tokens)[0])
    holds = {b: bool(g.get("holds", True)) for b, g in fresh.gate.items()}
    rate = {plan: len(ids) / min(t) for plan, t in times.items()}
    eligible = [plan for plan in grid if holds.get(plan.backend, True)]
    best = max(eligible, key=lambda plan: rate[plan])
    return {
        "what": "every plan the planner searches (backend × layout × batching), timed on its probe in "
        f"{rounds} alternating rounds (fastest round); the planner's own choice measured afresh before them",
        "probe": probe.describe(),
        "rounds": rounds,
        "first_use_seconds": round(first_use, 2),
        "planner_seconds": fresh.seconds,
        "planner_complete": fresh.complete,
        "conversion_seconds": cached.export_seconds if cached is not None else None,
        "gate": fresh.gate,
        "fastest": best.name,
        "fastest_passages_per_second": round(rate[best], 2),
        "chosen": {
            name: {
                "plan": plan.name,
                "passages_per_second": round(rate[plan], 2),
                "ratio_vs_fastest": round(rate[plan] / rate[best], 3),
            }
            for name, plan in choices.items()
        },
        "plans": sorted(
            (
                {
                    "plan": plan.name,
                    "passages_per_second": round(rate[plan], 2),
                    "median_passages_per_second": round(len(ids) / statistics.median(t), 2),
                    "gate": holds.get(plan.backend, True),
                }
                for plan, t in times.items()
            ),
            key=lambda row: -float(row["passages_per_second"]),
        ),
    }
