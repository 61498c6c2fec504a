"""The benchmark instrument's pure parts: metrics, percentiles, checks, data sets and ANN recall."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from semsearch.benchmarks.ann import candidates, exact_top, recall_at, synthetic_vectors
from semsearch.benchmarks.datasets import DatasetError, corpus_slice, load_beir, sample_queries
from semsearch.benchmarks.quality import evaluate, record_scores
from semsearch.benchmarks.report import (
    EXPECTED_DIR,
    ExpectedFiguresError,
    check_figures,
    load_expected,
    lookup,
    machine_difference,
    markdown_table,
)
from semsearch.benchmarks.timing import across_runs, latency_summary, percentile
from semsearch.search.results import Hit
from tests.helpers import write_beir


def test_metrics_match_hand_computed_values() -> None:
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
    run = {"q1": {"d1": 0.9, "dx": 0.5}, "q2": {"dx": 0.9, "d2": 0.5}}  # q3 got nothing: it counts as 0
    figures = evaluate(qrels, run)
    assert figures["recall@1"] == pytest.approx(100 / 3, abs=0.01)
    assert figures["recall@5"] == pytest.approx(200 / 3, abs=0.01)
    assert figures["mrr@10"] == pytest.approx(50.0, abs=0.01)
    assert figures["ndcg@10"] == pytest.approx(100 * (1 + 1 / math.log2(3)) / 3, abs=0.01)


def test_metrics_rank_by_score_not_by_insertion_order() -> None:
    figures = evaluate({"q": {"good": 1}}, {"q": {"bad": 0.1, "good": 0.8}})
    assert figures["recall@1"] == 100.0


def test_passage_hits_fold_into_their_record_by_the_best_score() -> None:
    def hit(article: str, score: float) -> Hit:
        return Hit(1, score, 0, article, "", "", None, None, None, (0, 0))

    assert record_scores([hit("a", 0.2), hit("b", 0.5), hit("a", 0.7), hit("b", 0.1)]) == {"a": 0.7, "b": 0.5}


def test_percentiles_agree_with_numpy() -> None:
    values = [float(v) for v in np.random.default_rng(3).exponential(10, size=101)]
    for q in (0, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    summary = latency_summary([1.0, 2.0, 3.0, 4.0])
    assert summary["p50_ms"] == 2.5 and summary["count"] == 4


def test_runs_merge_into_median_and_spread() -> None:
    merged = across_runs([{"p50_ms": 3.0}, {"p50_ms": 1.0}, {"p50_ms": 2.0}])
    assert merged == {"p50_ms": 2.0, "p50_ms_spread": [1.0, 3.0], "runs": 3}


def test_check_passes_within_tolerance_and_fails_outside() -> None:
    record = {"modes": {"dense": {"ndcg@10": 77.1, "recall@10": 90.0}}, "http": {"c16": {"qps": 80.0}}}
    expected = {
        "figures": [
            {"path": "modes.dense.ndcg@10", "expected": 77.3, "tolerance": 0.5},
            {"path": "modes.dense.recall@10", "expected": 91.7, "tolerance": 0.5},
            {"path": "http.c16.qps", "expected": 100, "tolerance_pct": 30, "better": "higher"},
            {"path": "http.c16.qps", "expected": 50, "tolerance_pct": 10, "better": "lower"},
            {"path": "modes.hybrid.ndcg@10", "expected": 80, "tolerance": 1},
        ]
    }
    assert [line.ok for line in check_figures(record, expected)] == [True, False, True, False, False]
    assert str(check_figures(record, expected)[4]).startswith("FAIL modes.hybrid.ndcg@10: missing")
    assert lookup(record, "modes.dense.ndcg@10") == 77.1
    assert lookup({"rows": [{"r": 1}, {"r": 2}]}, "rows.1.r") == 2 and lookup({"rows": []}, "rows.0.r") is None


MACHINE = {"cpu": "AMD EPYC", "flags": ["avx2", "fma"], "usable_cores": 2, "calibration_fp32_gflops": 40.0}


@given(
    scale=st.floats(min_value=0.05, max_value=20),
    change=st.sampled_from([None, "cpu", "flags", "usable_cores"]),
)
def test_figures_bound_to_a_machine_are_compared_only_on_a_like_machine(scale: float, change: str | None) -> None:
    """A slower or faster machine (or another CPU) never fails a speed figure; the behaviour figures and the
    ratios measured within the run are compared on every machine."""
    here = dict(MACHINE, calibration_fp32_gflops=40.0 * scale)
    if change is not None:
        here[change] = {"cpu": "Other CPU", "flags": ["avx2"], "usable_cores": 16}[change]
    record = {"environment": {"machine": here}, "load": {"qps": 10.0, "errors": 3}, "batching_ratio": {"c16": 0.9}}
    expected = {
        "machine": MACHINE,
        "figures": [
            {"path": "load.qps", "expected": 267, "tolerance_pct": 50, "better": "higher", "scope": "machine"},
            {"path": "load.errors", "expected": 0, "tolerance": 0},
            {"path": "batching_ratio.c16", "expected": 1.5, "tolerance_pct": 33, "better": "higher"},
        ],
    }
    alike = change is None and abs(scale - 1) <= 0.25
    speed, errors, ratio = check_figures(record, expected)
    assert (machine_difference(here, MACHINE) is None) == alike
    assert speed.skipped != alike and speed.ok != alike and str(speed).startswith("FAIL" if alike else "SKIP")
    assert not errors.ok and not errors.skipped and not ratio.ok and not ratio.skipped


def test_a_file_without_a_machine_never_compares_machine_figures() -> None:
    record = {"environment": {"machine": MACHINE}, "qps": 1.0}
    figure = {"path": "qps", "expected": 100, "tolerance_pct": 10, "better": "higher", "scope": "machine"}
    (line,) = check_figures(record, {"figures": [figure]})
    assert line.skipped and "another machine" in str(line)
    assert machine_difference(MACHINE, None) == "the expected figures name no machine"
    with pytest.raises(ExpectedFiguresError, match="scope"):
        check_figures(record, {"figures": [dict(figure, scope="planet")]})


SPEED_SUFFIXES = ("qps", "_ms", "per_second", "gmacs", "seconds")


@pytest.mark.parametrize("path", sorted(EXPECTED_DIR.glob("*.json")), ids=lambda p: p.name)
def test_shipped_speed_figures_are_bound_to_a_named_machine(path: Path) -> None:
    """An absolute speed in an expected file fails every slower machine unless it is bound to its machine."""
    figures = load_expected(path)
    for entry in figures["figures"]:
        if entry["path"].split(".")[-1].endswith(SPEED_SUFFIXES):
            assert entry.get("scope") == "machine", entry["path"]
    if any(entry.get("scope") == "machine" for entry in figures["figures"]):
        assert set(figures["machine"]) >= {"cpu", "flags", "usable_cores", "calibration_fp32_gflops"}


def test_the_fp32_calibration_is_a_positive_speed() -> None:
    from semsearch.benchmarks.environment import calibrate_fp32, machine

    assert calibrate_fp32(rounds=1) > 0
    assert set(machine()) == {"cpu", "flags", "usable_cores", "calibration_fp32_gflops"}


def test_malformed_expected_figures_are_named(tmp_path: Path) -> None:
    with pytest.raises(ExpectedFiguresError, match="No expected figures"):
        load_expected(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"figures": [{"path": "x"}]}))
    with pytest.raises(ExpectedFiguresError, match="Malformed expected figure"):
        check_figures({}, load_expected(bad))


def test_markdown_table_has_a_row_per_entry() -> None:
    table = markdown_table(["a", "b"], [[1, 0.5], ["x", 123.456]])
    assert table.splitlines() == ["| a | b |", "| --- | --- |", "| 1 | 0.500 |", "| x | 123.5 |"]


def test_beir_folder_loads_and_slices(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "tiny", records=12)
    data = load_beir(folder)
    assert len(data.queries) == len(data.qrels) > 0
    assert sample_queries(data, 3, seed=1) == sample_queries(data, 3, seed=1)
    assert len(sample_queries(data, 3, seed=1)) == 3
    small = corpus_slice(data, 5, seed=2, directory=tmp_path / "slice")
    kept = {json.loads(line)["_id"] for line in small.corpus.read_text().splitlines()}
    assert len(kept) == 5
    assert all(set(docs) <= kept for docs in small.qrels.values())
    assert set(small.queries) == set(small.qrels)


def test_a_folder_that_is_not_beir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="missing corpus.jsonl"):
        load_beir(tmp_path)
    folder = write_beir(tmp_path / "tiny", records=3)
    (folder / "qrels.tsv").write_text("q\td\t1\n")
    with pytest.raises(DatasetError, match="header"):
        load_beir(folder)


def test_synthetic_vectors_are_seeded_and_normalised() -> None:
    base, queries = synthetic_vectors(2000, 32, seed=5)
    again, _ = synthetic_vectors(2000, 32, seed=5)
    assert base.shape == (2000, 32) and queries.shape == (500, 32)
    assert np.array_equal(base, again)
    assert np.allclose(np.linalg.norm(base, axis=1), 1, atol=1e-5)
    assert not np.array_equal(base, synthetic_vectors(2000, 32, seed=6)[0])


def test_exact_top_matches_brute_force_and_recall_counts_overlap() -> None:
    base, queries = synthetic_vectors(3000, 16, seed=7)
    truth = exact_top(base, queries[:50])
    brute = np.argsort(-(queries[:50] @ base.T), axis=1, kind="stable")[:, :10]
    assert recall_at(truth, brute) > 0.99  # ties in float32 may swap equal scores
    assert recall_at(truth, truth) == 1.0
    shifted = np.roll(truth, 5, axis=1)
    shifted[:, :5] = -1
    assert recall_at(shifted, truth) == 0.5


def test_candidate_ivf_lists_have_enough_training_points() -> None:
    for count in (500, 2067, 100_000, 1_000_000):
        for candidate in candidates(count, hnsw_max=100_000):
            if candidate.factory.startswith("IVF"):
                nlist = int(candidate.factory.split(",")[0][3:])
                assert count >= 39 * nlist
                assert max(candidate.values) <= nlist
    assert [c.factory for c in candidates(1_000_000, hnsw_max=100_000)] == ["Flat", "IVF1024,Flat"]
