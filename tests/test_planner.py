"""The planner: the choice among measured plans, the quality gate, the cache and its key, forced plans, and the
plan shown where an index and a server say how they run. Real sessions on a tiny probe set; no timing is
asserted, only which plan wins given the timings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from semsearch.api.app import create_app
from semsearch.api.cli import main
from semsearch.errors import ConfigError
from semsearch.index.model.embedder import Embedder, configured_model, model_info, plan_status
from semsearch.index.model.export.onnx_export import ONNX_BACKENDS, SCALED_PER_CALL, cached_model
from semsearch.index.model.planning.cpu import cpu_fingerprint
from semsearch.index.model.planning.measure import probe_set
from semsearch.index.model.planning.plan import Plan, default_plan, parse_plan
from semsearch.index.model.planning.planner import (
    GATE_COSINE_MEAN,
    GATE_COSINE_MIN,
    Gate,
    ModelFiles,
    Planner,
    Timing,
    choose_backend,
    fastest,
)
from semsearch.index.storage.store import open_index
from semsearch.index.writing.builder import build_index
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS, REPO_ROOT, jsonl, write_corpus

TINY = probe_set(passages=6, queries=3)


def tiny_planner(said: list[str], **options: object) -> Planner:
    return Planner(probe=TINY, rounds=1, batchings=((2, 0), (4, 0)), progress=said.append, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model(base_settings: Settings) -> ModelFiles:
    return configured_model(base_settings)


@pytest.fixture()
def settings(base_settings: Settings, model: ModelFiles, tmp_path: Path) -> Settings:
    """A model cache of its own (so plans are measured afresh) that links to the converted models of the test
    model cache (so nothing is converted again)."""
    cache = tmp_path / "models"
    cache.mkdir()
    for backend in ONNX_BACKENDS:
        folder = cached_model(model.path, model.fingerprint, backend, base_settings.model_cache).parent
        (cache / folder.name).symlink_to(folder, target_is_directory=True)
    return base_settings.replace(model_cache=cache, backend="auto", plan="auto")


def plan(backend: str, lanes: int = 2, rows: int = 8) -> Plan:
    return Plan(backend, lanes, 2 // lanes, rows, 0, 1, "split")


def test_the_fastest_plan_wins_and_one_failing_the_gate_never_does() -> None:
    timings = [
        Timing(plan("onnx-int8"), "layout", (0.30, 0.20)),
        Timing(plan("onnx-int8", lanes=1), "layout", (0.25,)),
        Timing(plan("onnx-fp32"), "layout", (0.40, 0.35)),
    ]
    assert fastest(timings) == timings[0]  # the fastest round counts
    assert fastest(timings, lambda p: p.backend == "onnx-fp32") == timings[2]
    seconds, queries = {"onnx-int8": 0.20, "onnx-fp32": 0.35}, {"onnx-int8": 1.0, "onnx-fp32": 3.0}
    assert choose_backend(seconds, queries, {"onnx-int8": True, "onnx-fp32": True}) == "onnx-int8"
    # The fastest at batches and at queries, but outside the gate: never chosen.
    assert choose_backend(seconds, queries, {"onnx-int8": False, "onnx-fp32": True}) == "onnx-fp32"
    assert choose_backend(seconds, queries, {"onnx-int8": False}) is None


def test_within_the_tie_the_backend_with_faster_queries_wins() -> None:
    holds = {"onnx-int8": True, "onnx-fp32": True}
    seconds = {"onnx-int8": 0.200, "onnx-fp32": 0.195}
    assert choose_backend(seconds, {"onnx-int8": 1.0, "onnx-fp32": 3.0}, holds) == "onnx-int8"
    assert choose_backend({**seconds, "onnx-int8": 0.25}, {"onnx-int8": 1.0, "onnx-fp32": 3.0}, holds) == "onnx-fp32"


def test_the_gate_compares_cosines_with_its_thresholds() -> None:
    reference = np.eye(3, 4, dtype=np.float32)
    close = reference.copy()
    close[0] = [0.999, 0.0447, 0, 0]
    assert Gate().check(close, reference)["holds"]
    assert not Gate(mean=0.9999).check(close, reference)["holds"]
    assert not Gate().check(np.roll(reference, 1, axis=1), reference)["holds"]


def test_the_gate_thresholds_sit_just_below_a_run_that_held() -> None:
    """The plan-time gate stands for `bench quality --gate-against torch-fp32`: a backend as close to fp32 as
    one that held it passes, with a small margin for the probe being a sample of that run's passages."""
    run = json.loads((REPO_ROOT / "benchmarks" / "results" / "quality-gate.json").read_text())
    gate = run["gate"]
    assert gate["holds"] == 1 and gate["reference_backend"] == "torch-fp32"
    assert gate["cosine_mean"] - 0.005 <= GATE_COSINE_MEAN <= gate["cosine_mean"]
    assert gate["cosine_min"] - 0.01 <= GATE_COSINE_MIN <= gate["cosine_min"]


def test_a_plan_is_measured_once_per_model_and_machine(settings: Settings, model: ModelFiles) -> None:
    said: list[str] = []
    planner = tiny_planner(said)
    backend = model_info(settings, planner).backend
    assert backend in ONNX_BACKENDS and any("measuring how to run" in line for line in said)
    record, path, problem = planner.cached(settings, model)
    assert record is not None and problem is None and path.parent == settings.model_cache
    assert record.auto and set(record.backends) == set(ONNX_BACKENDS) and record.chosen == backend
    assert record.gate["onnx-fp32"]["reference"] and "cosine_mean" in record.gate["onnx-int8"]
    stages = {m["stage"] for m in record.measurements}
    assert stages >= {"layout", "query"}
    if record.chosen in SCALED_PER_CALL:  # one text per call: the batching changes nothing, so is not raced
        assert "batching" not in stages and (record.plans[backend].rows, record.plans[backend].tokens) == (1, 0)
    else:
        assert "batching" in stages
    assert record.probe == {"source": "squad-v1.1-dev", "passages": 6, "queries": 3}
    assert record.key["cores"] == cpu_fingerprint()["cores"] and record.key["fingerprint"] == model.fingerprint
    # Asked again, for the choice or for either backend's plan: read back, nothing timed.
    said.clear()
    made = path.stat().st_mtime_ns
    assert model_info(settings, planner).backend == backend
    for name in ONNX_BACKENDS:
        assert planner.plan_for(settings, model, name) == record.plans[name]
    assert said == [] and path.stat().st_mtime_ns == made
    assert plan_status(settings, planner).plan == record.plans[backend]


@pytest.mark.parametrize("change", ["cpu", "model"])
def test_another_cpu_or_model_measures_again(settings: Settings, model: ModelFiles, change: str) -> None:
    said: list[str] = []
    first = tiny_planner(said)
    first.record(settings, model, ONNX_BACKENDS)
    if change == "cpu":
        other, planner = model, tiny_planner(said, cpu={**cpu_fingerprint(), "flags": ["avx512_vnni", "amx_int8"]})
    else:  # another fingerprint; converted models are named by its first 16 digits, so they are reused
        other, planner = ModelFiles(model.name, model.path, model.fingerprint[:16] + "0" * 48, 256), first
    said.clear()
    assert planner.cached(settings, other)[0] is None
    record = planner.record(settings, other, ONNX_BACKENDS)
    assert record is not None and any("measuring" in line for line in said)
    assert len(list(settings.model_cache.glob("plan-*.json"))) == 2  # the first machine's plan is kept


def test_a_corrupt_cache_file_is_ignored_and_measured_again(settings: Settings, model: ModelFiles) -> None:
    said: list[str] = []
    planner = tiny_planner(said)
    _, path, _ = planner.cached(settings, model)
    path.write_text('{"key": {}, "plans": ', encoding="utf-8")
    record, _, problem = planner.cached(settings, model)
    assert record is None and problem is not None and "not a plan record" in problem
    assert planner.record(settings, model, ONNX_BACKENDS) is not None
    assert any("ignoring the plan cache" in line for line in said)
    assert planner.cached(settings, model)[0] is not None  # rewritten whole


def test_a_backend_that_fails_the_gate_is_never_chosen(settings: Settings, model: ModelFiles) -> None:
    """A gate no backend but the reference can pass: fp32 is chosen whatever the timings say."""
    planner = tiny_planner([], gate=Gate(mean=1.000001, min=1.0))
    record = planner.record(settings, model, ONNX_BACKENDS)
    assert record is not None and record.gate["onnx-int8"]["holds"] is False
    assert record.chosen == "onnx-fp32" and model_info(settings, planner).backend == "onnx-fp32"
    assert "onnx-int8" in record.plans  # still measured: an int8 index is still served with its own plan
    assert "refused by the quality gate: onnx-int8" in plan_status(settings, planner).describe()


def test_a_forced_plan_runs_without_measuring(settings: Settings, model: ModelFiles) -> None:
    said: list[str] = []
    planner = tiny_planner(said)
    forced = settings.replace(plan="onnx-fp32,lanes=1x2,rows=3,micro=whole")
    assert model_info(forced, planner).backend == "onnx-fp32"  # auto builds with the forced plan's backend
    assert planner.plan_for(forced, model, "onnx-fp32") == Plan("onnx-fp32", 1, 2, 3, 0, 2, "whole")
    # An index of another backend keeps its backend; the forced execution runs on it.
    assert planner.plan_for(forced, model, "onnx-int8").backend == "onnx-int8"
    builtin = settings.replace(plan="default")
    assert planner.plan_for(builtin, model, "onnx-int8") == default_plan("onnx-int8", settings.threads, 32)
    assert said == [] and not list(settings.model_cache.glob("plan-*.json"))
    assert plan_status(forced, planner).how == "forced"
    for bad in ("lanes=two", "onnx-int4", "query=99", "micro=sometimes"):
        with pytest.raises(ConfigError, match="SEMSEARCH_PLAN="):
            planner.plan_for(settings.replace(plan=bad), model, "onnx-int8")


def test_a_plan_name_reads_back_as_the_same_plan() -> None:
    measured = Plan("onnx-fp32", 1, 2, 16, 2048, 1, "whole")
    assert parse_plan(measured.name, default_plan("onnx-int8", 2, 32), 2) == measured
    assert Plan.from_dict(measured.to_dict()) == measured
    with pytest.raises(ValueError):
        Plan.from_dict({**measured.to_dict(), "rows": 0})


def test_every_layout_keeps_each_text_in_its_row(settings: Settings) -> None:
    """One wide session for batches and micro-batches run whole: the same vectors, row for row."""
    forced = settings.replace(backend="onnx-int8", plan="lanes=1x2,rows=3,tokens=200,query=1,micro=whole")
    embedder = Embedder.load(forced)
    texts = [str(r["text"]).split("\n\n")[0][:300] for r in GV_RECORDS[:7]]
    alone = np.vstack([embedder.embed_query(text) for text in texts])
    for vectors in (embedder.embed_documents(texts), embedder.embed_queries(texts)):
        similarity = vectors @ alone.T
        assert similarity.argmax(axis=1).tolist() == list(range(len(texts)))
        assert similarity.diagonal().min() > 0.97


def test_the_plan_is_recorded_in_the_index_and_shown_by_stats_and_config(
    base_settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    assert embedder.plan is not None
    settings = base_settings.replace(index=tmp_path / "index")
    build_index([write_corpus(tmp_path / "c", {"a.jsonl": jsonl(GV_RECORDS[:2])})], settings, embedder=embedder)
    stored = open_index(settings.index)
    try:
        assert stored.manifest.model["plan"] == embedder.plan.name and stored.manifest.model["backend"] == "onnx-int8"
    finally:
        stored.close()
    with TestClient(create_app(settings)) as client:
        stats = client.get("/stats").json()
    # The plan this machine has now: the one the session's embedder loaded, unless a later command measured the
    # model again for SEMSEARCH_BACKEND=auto (every backend at once) into the same cache.
    now = plan_status(settings)
    assert now.plan is not None and now.how == "measured"
    assert stats["model"]["plan"] == embedder.plan.name  # what embedded the index, recorded with it
    assert stats["query_plan"] == now.plan.name  # this machine's plan of the index's backend
    env = {"SEMSEARCH_BACKEND": "onnx-int8", "SEMSEARCH_MODEL_CACHE": str(base_settings.model_cache)}
    shown = CliRunner().invoke(main, ["config"], env=env)
    assert shown.exit_code == 0, shown.output
    assert f"Plan on this machine: {now.plan.name} (measured" in shown.output
    forced = CliRunner().invoke(main, ["config"], env={**env, "SEMSEARCH_PLAN": "default"})
    assert "(forced by SEMSEARCH_PLAN)" in forced.output
