"""Retrieval quality on a labelled data set: Recall@1/5/10/100, MRR@10 and nDCG@10 per retrieval mode.

Each corpus record goes through the real pipeline (reader, splitter, embedder, index) as one article;
passage hits are folded into their record by the maximum score, as BEIR does. The metrics come from
trec_eval (through ir-measures), averaged over every query, with a query that gets no hit counting 0.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.datasets import Dataset, sample_queries
from benchmarks.report import markdown_table, new_figure, save_figure
from benchmarks.timing import latency_summary, time_calls
from search.results import Hit
from search.searcher import MAX_K, Searcher

# Output name -> ir-measures name.
METRICS = {
    "recall@1": "R@1",
    "recall@5": "R@5",
    "recall@10": "R@10",
    "recall@100": "R@100",
    "mrr@10": "RR@10",
    "ndcg@10": "nDCG@10",
}
MODES = ("dense",)
_BATCH = 256


def record_scores(hits: Iterable[Hit]) -> dict[str, float]:
    """Passage hits folded into their article (corpus record) by the maximum score."""
    scores: dict[str, float] = {}
    for hit in hits:
        if hit.score > scores.get(hit.article_id, float("-inf")):
            scores[hit.article_id] = hit.score
    return scores


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Every metric ×100, averaged over all queries of `qrels` (a query missing from `run` scores 0)."""
    import ir_measures

    measures = {name: ir_measures.parse_measure(spec) for name, spec in METRICS.items()}
    by_measure = {measure: name for name, measure in measures.items()}
    totals = dict.fromkeys(METRICS, 0.0)
    for metric in ir_measures.iter_calc(list(measures.values()), dict(qrels), {q: dict(d) for q, d in run.items()}):
        totals[by_measure[metric.measure]] += float(metric.value)
    return {name: round(100 * total / len(qrels), 2) for name, total in totals.items()}


def run_mode(
    searcher: Searcher, queries: Sequence[tuple[str, str]], mode: str, k: int = MAX_K
) -> tuple[dict[str, dict[str, float]], float]:
    """The run (query id -> record id -> score) for every query, and the seconds it took."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    run: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for lo in range(0, len(queries), _BATCH):
        batch = queries[lo : lo + _BATCH]
        for (query_id, _), hits in zip(batch, searcher.search_many([text for _, text in batch], k), strict=True):
            run[query_id] = record_scores(hits)
    return run, time.perf_counter() - started


def measure_quality(
    dataset: Dataset,
    searcher: Searcher,
    modes: Sequence[str],
    seed: int,
    query_count: int = 0,
    latency_queries: int = 200,
    runs: int = 3,
) -> dict[str, Any]:
    """Metrics per mode over the sampled queries, and per-query latency (k=10) on a seeded subset."""
    queries = sample_queries(dataset, query_count, seed)
    qrels = {q: dataset.qrels[q] for q, _ in queries}
    timed = [text for _, text in random.Random(seed).sample(queries, min(latency_queries, len(queries)))]
    results: dict[str, Any] = {}
    for mode in modes:
        run, seconds = run_mode(searcher, queries, mode)
        figures: dict[str, Any] = evaluate(qrels, run)
        figures["queries_without_hits"] = sum(1 for q, _ in queries if not run.get(q))
        figures["batch_queries_per_second"] = round(len(queries) / seconds, 1)
        for text in timed[:10]:  # warm-up
            searcher.search(text, 10)
        per_run = [latency_summary(time_calls(lambda q: searcher.search(q, 10), timed)) for _ in range(runs)]
        figures["search_p50_ms"] = round(statistics.median(r["p50_ms"] for r in per_run), 3)
        figures["search_p99_ms"] = round(statistics.median(r["p99_ms"] for r in per_run), 3)
        figures["search_p50_ms_spread"] = [min(r["p50_ms"] for r in per_run), max(r["p50_ms"] for r in per_run)]
        results[mode] = figures
    return {"queries": len(queries), "latency_queries": len(timed), "latency_runs": runs, "modes": results}


def quality_markdown(record: Mapping[str, Any]) -> str:
    headers = ["mode", "nDCG@10", "MRR@10", "R@1", "R@5", "R@10", "R@100", "search p50 ms", "p99 ms"]
    rows = [
        [
            mode,
            f["ndcg@10"],
            f["mrr@10"],
            f["recall@1"],
            f["recall@5"],
            f["recall@10"],
            f["recall@100"],
            f["search_p50_ms"],
            f["search_p99_ms"],
        ]
        for mode, f in record["modes"].items()
    ]
    dataset = record["dataset"]
    return (
        f"Data set {dataset['name']}: {record['queries']} queries, {record['index']['passages']} passages of "
        f"{record['index']['articles']} records. Metrics ×100 (trec_eval via ir-measures); latency: in-process "
        f"`search(q, k=10)`, {record['latency_queries']} queries, median of {record['latency_runs']} runs.\n\n"
        + markdown_table(headers, rows)
    )


def quality_plot(record: Mapping[str, Any], path: Path) -> None:
    fig, ax = new_figure(f"Quality vs latency: {record['dataset']['name']}", "search p50 (ms)", "score ×100")
    for mode, f in record["modes"].items():
        ax.scatter([f["search_p50_ms"]], [f["ndcg@10"]], marker="o", label=f"{mode} nDCG@10")
        ax.scatter([f["search_p50_ms"]], [f["recall@10"]], marker="^", label=f"{mode} R@10")
    ax.legend(fontsize=8)
    save_figure(fig, path)
