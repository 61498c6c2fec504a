"""The planner: at the first use of a model on a machine, time candidate plans on a fixed probe set, keep the
fastest one that passes the quality gate, and cache it (`cache`).

What is measured, in stages, each a race of its candidates in alternating rounds (a candidate more than
`PRUNE` times slower than the best after a round runs no more rounds; a candidate's time is its fastest round):

1. layouts: each ONNX backend on each way to spend the threads on batches (one-thread lanes side by side, one
   wide session, halves between), at the base batching;
2. the gate: each backend's probe vectors against onnx-fp32's (the same arithmetic as torch-fp32); a backend
   whose cosines fall below the gate's thresholds is never chosen;
3. queries: per backend, the threads one query runs on, and whether a micro-batch of queries is split across
   the lanes or run as one call;
4. the backend: the fastest at batches among those that pass the gate (within `TIE` of each other, the one
   with the faster queries);
5. batching: for that backend, texts per call and a budget of padded tokens per call.

Measuring stops at `budget` seconds (the first round of layouts always runs): what was not measured keeps its
base value, and the record says the run was cut short.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semsearch.index.model.export.onnx_export import ONNX_BACKENDS, SCALED_PER_CALL, cached_model
from semsearch.index.model.onnx_runtime import OnnxEncoder, TokenIds
from semsearch.index.model.planning.cache import (
    PlanRecord,
    cache_file,
    plan_key,
    planning_lock,
    read_record,
    write_record,
)
from semsearch.index.model.planning.measure import (
    MICRO_BATCH,
    Probe,
    Vectors,
    median,
    probe_set,
    time_batches,
    time_micro_batch,
    time_queries,
)
from semsearch.index.model.planning.plan import AUTO, DEFAULT, Plan, default_plan, parse_plan

if TYPE_CHECKING:
    from semsearch.settings import Settings

REFERENCE = "onnx-fp32"
FALLBACK = "onnx-int8"  # the backend of the built-in plan, and of `auto` when nothing could be measured
# The gate at plan time: mean and lowest cosine of a backend's probe vectors against the reference's. A backend
# closer to fp32 than these has held the nDCG@10 gate (`semsearch bench quality --gate-against torch-fp32`,
# benchmarks/results/quality-gate.json); they sit a little below that run's cosines, for the probe's sampling.
GATE_COSINE_MEAN = 0.99
GATE_COSINE_MIN = 0.97
BUDGET_SECONDS = 15.0
ROUNDS = 3
PRUNE = 1.25
TIE = 0.05
BASE_BATCHING = (8, 0)
# (rows, tokens) per model call; with a token budget, rows 32 (SEMSEARCH_BATCH_SIZE's default, a cap on every
# call) leaves the budget to decide.
BATCHINGS = ((4, 0), (8, 0), (16, 0), (32, 1024), (32, 2048))


@dataclass(frozen=True)
class ModelFiles:
    """What the planner needs of a model: its identity (for the cache key) and where its files are."""

    name: str
    path: str
    fingerprint: str
    max_seq_length: int


@dataclass(frozen=True)
class Gate:
    mean: float = GATE_COSINE_MEAN
    min: float = GATE_COSINE_MIN

    def check(self, vectors: Vectors, reference: Vectors) -> dict[str, Any]:
        cosines = np.sum(vectors * reference, axis=1)
        mean, low = float(cosines.mean()), float(cosines.min())
        return {
            "cosine_mean": round(mean, 5),
            "cosine_min": round(low, 5),
            "holds": mean >= self.mean and low >= self.min,
        }


@dataclass(frozen=True)
class Timing:
    """One candidate's rounds, in seconds per probe."""

    plan: Plan
    stage: str
    seconds: tuple[float, ...]

    @property
    def best(self) -> float:
        return min(self.seconds)

    def to_dict(self, passages: int) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "plan": self.plan.name,
            "seconds": [round(s, 4) for s in self.seconds],
            "passages_per_second": round(passages / self.best, 2),
        }


def layouts(threads: int) -> list[tuple[int, int]]:
    """(lanes, threads each) using every thread: one-thread lanes, half as many two-thread ones, two lanes, and
    one session as wide as all of them."""
    threads = max(1, threads)
    lanes = [threads, threads // 2, 2, 1]
    return [(n, threads // n) for n in dict.fromkeys(lanes) if n >= 1 and threads % n == 0]


def query_thread_counts(threads: int) -> list[int]:
    return sorted({n for n in (1, 2, 4, threads) if n <= max(1, threads)})


def fastest(timings: Sequence[Timing], allowed: Callable[[Plan], bool] = lambda plan: True) -> Timing | None:
    """The allowed candidate with the lowest time (the first of equals), or None."""
    best: Timing | None = None
    for timing in timings:
        if allowed(timing.plan) and (best is None or timing.best < best.best):
            best = timing
    return best


def choose_backend(
    seconds: Mapping[str, float], query_ms: Mapping[str, float], holds: Mapping[str, bool], tie: float = TIE
) -> str | None:
    """The backend to build with: the fastest at batches (`seconds` per probe) of those the gate lets through;
    of those within `tie` of it, the one with the fastest query. None when the gate lets none through."""
    eligible = [backend for backend in seconds if holds.get(backend, False)]
    if not eligible:
        return None
    top = min(seconds[b] for b in eligible)
    near = [b for b in eligible if seconds[b] <= top * (1 + tie)]
    return min(near, key=lambda b: (query_ms.get(b, float("inf")), seconds[b]))


@dataclass(frozen=True)
class PlanStatus:
    """The plan a model runs with here, as `semsearch config` and `/stats` show it. `how`: forced (by
    SEMSEARCH_PLAN), measured (cached), not measured (yet: the first index or search measures it), or none
    (torch-fp32 runs without a plan)."""

    backend: str | None
    plan: Plan | None
    how: str
    record: PlanRecord | None = None
    path: Path | None = None
    problem: str | None = None

    def describe(self) -> str:
        if self.how == "none":
            return "none: torch-fp32 runs without a plan"
        if self.how == "forced" and self.plan is not None:
            return f"{self.plan.name} (forced by SEMSEARCH_PLAN)"
        if self.how == "measured" and self.plan is not None and self.record is not None:
            record = self.record
            chosen = ", chosen among " + ", ".join(record.backends) if record.auto else ""
            refused = [b for b, g in record.gate.items() if not g.get("holds", True)]
            return (
                f"{self.plan.name} (measured{chosen} on {record.planned_at} in {record.seconds:.1f} s"
                + (f"; refused by the quality gate: {', '.join(refused)}" if refused else "")
                + ("; the time budget ran out before every stage" if not record.complete else "")
                + f"; cache {self.path})"
            )
        ignored = f" ({self.problem}; it is measured again)" if self.problem else ""
        return f"not measured yet: the first index or search measures it{ignored}"


@dataclass
class Planner:
    """Measures plans on `probe` (the bundled SQuAD probe by default) within `budget` seconds. `cpu` replaces
    this machine's CPU fingerprint in the cache key (tests); `progress` is told what is being measured."""

    probe: Probe | None = None
    budget: float = BUDGET_SECONDS
    rounds: int = ROUNDS
    batchings: Sequence[tuple[int, int]] = BATCHINGS
    gate: Gate = field(default_factory=Gate)
    cpu: dict[str, Any] | None = None
    progress: Callable[[str], None] | None = None

    # --- what the engine asks ---------------------------------------------------------------------------------

    def plan_for(self, settings: Settings, model: ModelFiles, backend: str) -> Plan:
        """The plan `backend` runs with: the forced one (`SEMSEARCH_PLAN`), or the measured one, measured now
        if this machine has none for this model yet. With `SEMSEARCH_BACKEND=auto`, every backend is measured
        at once, so the choice among them comes with it."""
        forced = self.forced(settings, backend)
        if forced is not None:
            return forced
        scope = ONNX_BACKENDS if settings.backend == AUTO else (backend,)
        record = self.record(settings, model, scope)
        if record is None or backend not in record.plans:
            return default_plan(backend, settings.threads, settings.batch_size)
        return record.plans[backend]

    def auto_backend(self, settings: Settings, model: ModelFiles) -> str:
        """The backend `SEMSEARCH_BACKEND=auto` builds with: the forced plan's, or the measured choice."""
        forced = self.forced(settings)
        if forced is not None:
            return forced.backend
        record = self.record(settings, model, ONNX_BACKENDS)
        return record.chosen if record is not None else FALLBACK

    def forced(self, settings: Settings, backend: str | None = None) -> Plan | None:
        """The plan `SEMSEARCH_PLAN` forces, or None when plans are measured. For a given `backend` (the
        index's, or SEMSEARCH_BACKEND's) the forced plan's execution runs on it; without one, the forced plan's
        own backend (onnx-int8 where it names none) is what `auto` builds with."""
        if settings.plan == AUTO:
            return None
        base = default_plan(backend or FALLBACK, settings.threads, settings.batch_size)
        plan = base if settings.plan == DEFAULT else parse_plan(settings.plan, base, settings.threads)
        return plan if backend is None else plan.replace(backend=backend)

    def status(self, settings: Settings, model: ModelFiles) -> PlanStatus:
        """What `plan_for` would give the configured backend (the choice, for auto), without measuring."""
        backend = None if settings.backend == AUTO else settings.backend
        forced = self.forced(settings, backend)
        if forced is not None:
            return PlanStatus(forced.backend, forced, "forced")
        record, path, problem = self.cached(settings, model)
        if record is not None and backend is None and record.auto:
            backend = record.chosen
        if record is None or backend not in record.plans:
            return PlanStatus(backend, None, "not measured", None, path, problem)
        return PlanStatus(backend, record.plans[backend], "measured", record, path)

    def cached(self, settings: Settings, model: ModelFiles) -> tuple[PlanRecord | None, Path, str | None]:
        """The cached record for this model and machine without measuring anything, its file, and why a file
        that is there was ignored."""
        key = plan_key(model.name, model.fingerprint, settings.threads, self.cpu)
        path = cache_file(settings.model_cache, key)
        record, problem = read_record(path, key)
        return record, path, problem

    def record(self, settings: Settings, model: ModelFiles, scope: Sequence[str]) -> PlanRecord | None:
        """The record covering `scope`, from the cache or measured now (and cached). None, with a warning,
        when measuring failed: the built-in plan runs instead."""
        record, path, problem = self.cached(settings, model)
        if _covers(record, scope):
            return record
        with planning_lock(path):
            record, path, problem = self.cached(settings, model)  # another process may have measured it meanwhile
            if _covers(record, scope):
                return record
            if problem:
                self._say(f"semsearch: ignoring the plan cache: {problem}")
            self._say(
                f"semsearch: measuring how to run {model.name} on this machine (once per machine and model, about "
                f"{self.budget:.0f} s; forced plans skip this: SEMSEARCH_PLAN)"
            )
            try:
                record = self.measure(model, settings.model_cache, list(scope), settings.threads)
            except Exception as exc:  # plans are an optimisation: the built-in one is still right
                self._say(f"semsearch: could not measure plans ({type(exc).__name__}: {exc}); using the built-in plan")
                return None
            try:
                write_record(path, record)
            except OSError as exc:
                self._say(f"semsearch: could not cache the plan in {path} ({exc}); it is measured again next time")
            self._say(
                f"semsearch: plan {record.plans[record.chosen].name} (measured in {record.seconds:.1f} s"
                + (f", models converted in {record.export_seconds:.1f} s" if record.export_seconds else "")
                + f"; cached in {path})"
            )
            return record

    # --- measuring --------------------------------------------------------------------------------------------

    def measure(self, model: ModelFiles, cache: Path, backends: list[str], threads: int) -> PlanRecord:
        """Measure every stage for `backends` (each converted to ONNX first if needed) and return the record."""
        started = time.perf_counter()
        files = {backend: cached_model(model.path, model.fingerprint, backend, cache) for backend in backends}
        export_seconds = time.perf_counter() - started
        run = _Run(self, model, files, threads)
        record = run.plan()
        return PlanRecord(
            key=plan_key(model.name, model.fingerprint, threads, self.cpu),
            backends=tuple(backends),
            auto=set(backends) >= set(ONNX_BACKENDS),
            chosen=record["chosen"],
            plans=record["plans"],
            gate=record["gate"],
            measurements=record["measurements"],
            probe=run.probe.describe(),
            planned_at=datetime.now(UTC).isoformat(timespec="seconds"),
            seconds=round(time.perf_counter() - started - export_seconds, 2),
            export_seconds=round(export_seconds, 2),
            complete=run.complete,
        )

    def _say(self, line: str) -> None:
        (self.progress or _stderr)(line)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _covers(record: PlanRecord | None, scope: Sequence[str]) -> bool:
    if record is None:
        return False
    if set(scope) >= set(ONNX_BACKENDS):
        return record.auto
    return set(scope) <= set(record.plans)


class _Run:
    """One planning run: the encoders it made, the probe tokenised once, and the deadline."""

    def __init__(self, planner: Planner, model: ModelFiles, files: Mapping[str, Path], threads: int) -> None:
        self.planner = planner
        self.model = model
        self.files = files
        self.threads = max(1, threads)
        self.probe = planner.probe or probe_set()
        self.deadline = time.perf_counter() + planner.budget
        self.complete = True
        self._encoders: dict[tuple[str, int, int, int], OnnxEncoder] = {}
        self._vectors: dict[str, Vectors] = {}
        self.ids: list[TokenIds] = []
        self.query_ids: list[TokenIds] = []
        self.measurements: list[dict[str, Any]] = []

    def encoder(self, backend: str, lanes: int, lane_threads: int, query_threads: int) -> OnnxEncoder:
        key = (backend, lanes, lane_threads, query_threads)
        if key not in self._encoders:
            encoder = OnnxEncoder(
                self.files[backend],
                self.model.path,
                self.model.max_seq_length,
                self.threads,
                lanes=lanes,
                lane_threads=lane_threads,
                query_threads=query_threads,
            )
            if not self.ids:
                self.ids = encoder.tokenize(self.probe.passages)
                self.query_ids = encoder.tokenize(self.probe.queries)
            time_batches(encoder, self.ids[: 2 * lanes], 1, 0)  # warm-up: makes the lane sessions
            self._encoders[key] = encoder
        return self._encoders[key]

    def late(self) -> bool:
        if time.perf_counter() > self.deadline:
            self.complete = False
            return True
        return False

    def time_plan(self, plan: Plan) -> float:
        encoder = self.encoder(plan.backend, plan.lanes, plan.lane_threads, 1)
        seconds, vectors = time_batches(encoder, self.ids, plan.rows, plan.tokens)
        self._vectors.setdefault(plan.backend, vectors)
        return seconds

    def race(self, candidates: Sequence[Plan], stage: str, first_round_always: bool = False) -> list[Timing]:
        """Every candidate timed in alternating rounds; slow ones drop out after a round."""
        times: dict[Plan, list[float]] = {plan: [] for plan in candidates}
        for round_no in range(max(1, self.planner.rounds)):
            measured = [min(t) for t in times.values() if t]
            best = min(measured) if measured else float("inf")
            for plan in candidates:
                if round_no > 0 and (not times[plan] or min(times[plan]) > PRUNE * best):
                    continue
                if (round_no > 0 or not first_round_always) and self.late():
                    break
                times[plan].append(self.time_plan(plan))
        timings = [Timing(plan, stage, tuple(t)) for plan, t in times.items() if t]
        self.measurements += [t.to_dict(len(self.ids)) for t in timings]
        return timings

    def plan(self) -> dict[str, Any]:
        backends = list(self.files)
        rows, tokens = BASE_BATCHING
        base = [
            Plan(b, lanes, each, rows, tokens, 1, "split") for b in backends for lanes, each in layouts(self.threads)
        ]
        by_layout = self.race(base, "layout", first_round_always=True)
        best = {b: fastest([t for t in by_layout if t.plan.backend == b]) for b in backends}
        layout = {b: t.plan for b, t in best.items() if t is not None}
        gate = self.check_gate(list(layout))
        queries = {b: self.query_plan(plan) for b, plan in layout.items()}
        holds = {b: bool(gate.get(b, {"holds": True})["holds"]) for b in layout}
        chosen = choose_backend(
            {b: t.best for b, t in best.items() if t is not None}, {b: q[1] for b, q in queries.items()}, holds
        )
        if chosen is None:  # the reference always holds; without it in scope, the one backend asked for
            chosen = backends[0]
        plans = {b: queries[b][0] for b in layout}
        winner = plans[chosen]
        if chosen in SCALED_PER_CALL:
            # One text per call whatever the batch holds: rows and tokens change nothing, so none is raced (a
            # race among equals would pick by noise, and another run of it would pick another).
            plans[chosen] = winner.replace(rows=1, tokens=0)
        else:
            batching = [winner.replace(rows=r, tokens=t) for r, t in dict.fromkeys(self.planner.batchings)]
            batching = [winner, *[p for p in batching if p != winner]]
            top = fastest(self.race(batching, "batching"))
            if top is not None:
                plans[chosen] = top.plan
        return {"chosen": chosen, "plans": plans, "gate": gate, "measurements": self.measurements}

    def check_gate(self, backends: list[str]) -> dict[str, dict[str, Any]]:
        """Each backend's probe vectors against the reference's, when the reference is among them."""
        if REFERENCE not in backends or len(backends) < 2:
            return {}
        reference = self._vectors[REFERENCE]
        gate: dict[str, dict[str, Any]] = {REFERENCE: {"reference": True, "holds": True}}
        for backend in backends:
            if backend != REFERENCE:
                gate[backend] = self.planner.gate.check(self._vectors[backend], reference)
        return gate

    def query_plan(self, layout: Plan) -> tuple[Plan, float]:
        """`layout` with the fastest query threads and micro-batch mode, and its median query in ms."""
        counts = query_thread_counts(self.threads)
        latencies: dict[int, list[float]] = {n: [] for n in counts}
        for round_no in range(max(1, self.planner.rounds)):
            for n in counts:
                if round_no > 0 and self.late():
                    break
                encoder = self.encoder(layout.backend, layout.lanes, layout.lane_threads, n)
                latencies[n] += time_queries(encoder, self.query_ids)
        p50 = {n: median(t) for n, t in latencies.items() if t}
        threads = min(p50, key=lambda n: p50[n])
        for n, value in p50.items():
            self.measurements.append(
                {"stage": "query", "backend": layout.backend, "query_threads": n, "p50_ms": round(value, 3)}
            )
        plan = layout.replace(query_threads=threads, micro="whole" if layout.lanes < 2 else "split")
        if layout.lanes >= 2 and not self.late():
            encoder = self.encoder(layout.backend, layout.lanes, layout.lane_threads, threads)
            micro = self.query_ids[:MICRO_BATCH]
            times: dict[str, list[float]] = {"split": [], "whole": []}
            for _ in range(max(1, self.planner.rounds)):
                for mode in times:
                    encoder.split_queries = mode == "split"
                    encoder.encode_ids(micro)  # warm-up of this shape
                    times[mode] += time_micro_batch(encoder, micro, 3)
            encoder.split_queries = True
            medians = {mode: median(t) for mode, t in times.items()}
            plan = plan.replace(micro=min(medians, key=lambda m: medians[m]))
            for mode, value in medians.items():
                self.measurements.append(
                    {"stage": "micro", "backend": layout.backend, "micro": mode, "p50_ms": round(value, 3)}
                )
        return plan, p50[threads]
