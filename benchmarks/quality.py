"""Retrieval quality on a labelled data set: Recall@1/5/10/100, MRR@10 and nDCG@10 per retrieval mode.

Each corpus record goes through the real pipeline (reader, splitter, embedder, index) as one article;
passage hits are folded into their record by the maximum score, as BEIR does. The metrics come from
trec_eval (through ir-measures), averaged over every query, with a query that gets no hit counting 0.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.benchmarks.datasets import Dataset, sample_queries
from semsearch.benchmarks.report import markdown_table, new_figure, save_figure
from semsearch.benchmarks.timing import latency_summary, time_calls
from semsearch.search.diversify import Pick
from semsearch.search.results import Hit
from semsearch.search.searcher import MAX_K, Searcher, SearchOptions, clean_query

# Output name -> ir-measures name.
METRICS = {
    "recall@1": "R@1",
    "recall@5": "R@5",
    "recall@10": "R@10",
    "recall@100": "R@100",
    "mrr@10": "RR@10",
    "ndcg@10": "nDCG@10",
}
# Each row of the table: a retrieval mode of the engine, with the options that differ from the defaults.
CONFIGS: dict[str, dict[str, Any]] = {
    "dense": {"mode": "dense"},
    "lexical": {"mode": "lexical"},
    "hybrid": {"mode": "hybrid"},
    "hybrid-rrf": {"mode": "hybrid", "fusion": "rrf", "weight": 0.5},
}
SWEEP_WEIGHTS = tuple(round(w / 10, 1) for w in range(11))
_BATCH = 256


def record_scores(picks: Iterable[Hit | Pick]) -> dict[str, float]:
    """Passage hits folded into their article (corpus record) by the maximum score."""
    scores: dict[str, float] = {}
    for pick in picks:
        if pick.score > scores.get(pick.article_id, float("-inf")):
            scores[pick.article_id] = pick.score
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


def encode_all(searcher: Searcher, texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """Query vectors for every text, in batches, once for all modes."""
    return np.vstack([searcher.encode(texts[lo : lo + _BATCH]) for lo in range(0, len(texts), _BATCH)])


def run_config(
    searcher: Searcher,
    queries: Sequence[tuple[str, str]],
    vectors: npt.NDArray[np.float32],
    options: SearchOptions,
    k: int = MAX_K,
) -> dict[str, dict[str, float]]:
    """The run (query id -> record id -> score) of every query under `options`."""
    run: dict[str, dict[str, float]] = {}
    for lo in range(0, len(queries), _BATCH):
        batch = queries[lo : lo + _BATCH]
        texts = [clean_query(text) for _, text in batch]
        picks = searcher.retrieve(vectors[lo : lo + _BATCH], texts, k, options)
        for (query_id, _), found in zip(batch, picks, strict=True):
            run[query_id] = record_scores(found)
    return run


def split_by_topic(dataset: Dataset, query_ids: Sequence[str], seed: int) -> tuple[set[str], set[str]]:
    """Queries halved by the title of their relevant record (one Wikipedia article stays on one side),
    so a weight tuned on one half is tested on topics it never saw."""
    titles = corpus_titles(dataset)
    topic = {q: titles.get(min(dataset.qrels[q]), min(dataset.qrels[q])) for q in query_ids}
    topics = sorted(set(topic.values()))
    random.Random(seed).shuffle(topics)
    tune_topics = set(topics[: len(topics) // 2])
    tune = {q for q in query_ids if topic[q] in tune_topics}
    return tune, set(query_ids) - tune


def corpus_titles(dataset: Dataset) -> dict[str, str]:
    titles = {}
    with dataset.corpus.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                titles[str(record["_id"])] = str(record.get("title") or record["_id"])
    return titles


def weight_sweep(
    searcher: Searcher,
    dataset: Dataset,
    queries: Sequence[tuple[str, str]],
    vectors: npt.NDArray[np.float32],
    seed: int,
) -> dict[str, Any]:
    """nDCG@10 and R@10 of weighted fusion per dense weight (and of plain RRF), on a tuning half and a
    held-out half."""
    tune, held_out = split_by_topic(dataset, [q for q, _ in queries], seed)
    rows = []
    for fusion, weight in [("weighted", w) for w in SWEEP_WEIGHTS] + [("rrf", 0.5)]:
        options = searcher.defaults.replace(mode="hybrid", fusion=fusion, weight=weight)
        run = run_config(searcher, queries, vectors, options)
        row: dict[str, Any] = {"fusion": fusion, "weight": weight}
        for name, part in (("tune", tune), ("held_out", held_out)):
            figures = evaluate({q: dataset.qrels[q] for q in part}, {q: run[q] for q in part if q in run})
            row[f"{name}_ndcg@10"] = figures["ndcg@10"]
            row[f"{name}_recall@10"] = figures["recall@10"]
        rows.append(row)
    best = max((r for r in rows), key=lambda r: (r["tune_ndcg@10"], r["tune_recall@10"]))
    return {"tune_queries": len(tune), "held_out_queries": len(held_out), "rows": rows, "best_on_tune": best}


def measure_quality(
    dataset: Dataset,
    searcher: Searcher,
    configs: Sequence[str],
    seed: int,
    query_count: int = 0,
    latency_queries: int = 200,
    runs: int = 3,
    sweep: bool = False,
) -> dict[str, Any]:
    """Metrics per configuration over the sampled queries, and per-query latency (k=10) on a seeded subset."""
    queries = sample_queries(dataset, query_count, seed)
    qrels = {q: dataset.qrels[q] for q, _ in queries}
    timed = [text for _, text in random.Random(seed).sample(queries, min(latency_queries, len(queries)))]
    started = time.perf_counter()
    vectors = encode_all(searcher, [clean_query(text) for _, text in queries])
    encode_seconds = time.perf_counter() - started
    results: dict[str, Any] = {}
    for name in configs:
        options = searcher.defaults.replace(**CONFIGS[name])
        started = time.perf_counter()
        run = run_config(searcher, queries, vectors, options)
        rank_seconds = time.perf_counter() - started
        figures: dict[str, Any] = evaluate(qrels, run)
        # The @10 figures are those of the page a user gets: a request for 10 hits ranks fewer candidates than one
        # for 100 (`candidate_depth`), so its top 10 can differ from the top 10 of the 100.
        page = evaluate(qrels, run_config(searcher, queries, vectors, options, k=10))
        figures.update({name: value for name, value in page.items() if name.endswith("@10")})
        figures["options"] = {k: v for k, v in dataclasses.asdict(options).items() if k != "filters"}
        figures["queries_without_hits"] = sum(1 for q, _ in queries if not run.get(q))
        figures["batch_queries_per_second"] = round(len(queries) / (rank_seconds + encode_seconds), 1)
        for text in timed[:10]:  # warm-up
            searcher.search(text, 10, options)
        call = functools.partial(searcher.search, k=10, options=options)
        per_run = [latency_summary(time_calls(call, timed)) for _ in range(runs)]
        figures["search_p50_ms"] = round(statistics.median(r["p50_ms"] for r in per_run), 3)
        figures["search_p99_ms"] = round(statistics.median(r["p99_ms"] for r in per_run), 3)
        figures["search_p50_ms_spread"] = [min(r["p50_ms"] for r in per_run), max(r["p50_ms"] for r in per_run)]
        results[name] = figures
    record: dict[str, Any] = {
        "queries": len(queries),
        "latency_queries": len(timed),
        "latency_runs": runs,
        "default_mode": searcher.defaults.mode,
        "modes": results,
    }
    if sweep:
        record["sweep"] = weight_sweep(searcher, dataset, queries, vectors, seed)
    return record


GATE_NDCG_POINTS = 0.5


def backend_gate(
    fast: Mapping[str, Any], reference: Mapping[str, Any], fast_vectors: npt.NDArray[np.float32],
    reference_vectors: npt.NDArray[np.float32],
) -> dict[str, Any]:  # fmt: skip
    """The quality gate of a fast backend: per mode, nDCG@10 and R@10 against the reference backend on the same
    queries (it holds when nDCG@10 is within 0.5 point), and the cosine between the two backends' passage vectors."""
    cosines = np.sum(fast_vectors * reference_vectors, axis=1)
    modes = {}
    for name, figures in fast["modes"].items():
        ref = reference["modes"][name]
        delta = round(figures["ndcg@10"] - ref["ndcg@10"], 2)
        modes[name] = {
            "ndcg@10": figures["ndcg@10"],
            "reference_ndcg@10": ref["ndcg@10"],
            "delta_ndcg@10": delta,
            "delta_recall@10": round(figures["recall@10"] - ref["recall@10"], 2),
            "holds": int(abs(delta) <= GATE_NDCG_POINTS),
        }
    return {
        "passages": len(cosines),
        "cosine_mean": round(float(cosines.mean()), 5),
        "cosine_min": round(float(cosines.min()), 5),
        "modes": modes,
        "holds": int(all(m["holds"] for m in modes.values())),
    }


def _describe(name: str, f: Mapping[str, Any], default_mode: str) -> str:
    options = f["options"]
    label = name
    if options["mode"] == "hybrid":
        label += f" ({options['fusion']}, dense weight {options['weight']})"
    if name == default_mode:
        label += " **default**"
    return label


def quality_markdown(record: Mapping[str, Any]) -> str:
    headers = ["mode", "nDCG@10", "MRR@10", "R@1", "R@5", "R@10", "R@100", "search p50 ms", "p99 ms"]
    rows = [
        [
            _describe(name, f, record["default_mode"]),
            f["ndcg@10"],
            f["mrr@10"],
            f["recall@1"],
            f["recall@5"],
            f["recall@10"],
            f["recall@100"],
            f["search_p50_ms"],
            f["search_p99_ms"],
        ]
        for name, f in record["modes"].items()
    ]
    dataset = record["dataset"]
    text = (
        f"Data set {dataset['name']}: {record['queries']} queries, {record['index']['passages']} passages of "
        f"{record['index']['articles']} records. Metrics ×100 (trec_eval via ir-measures), passages folded into "
        f"their record by the best score; latency: in-process `search(q, k=10)`, {record['latency_queries']} "
        f"queries, median of {record['latency_runs']} runs.\n\n" + markdown_table(headers, rows)
    )
    sweep = record.get("sweep")
    if sweep:
        best = sweep["best_on_tune"]
        text += (
            f"\n\nHybrid weight sweep: queries split by the topic (title) of their relevant record, "
            f"{sweep['tune_queries']} to tune and {sweep['held_out_queries']} held out. Best on the tuning half: "
            f"{best['fusion']} with dense weight {best['weight']} (held out: nDCG@10 {best['held_out_ndcg@10']}, "
            f"R@10 {best['held_out_recall@10']}).\n\n"
            + markdown_table(
                ["fusion", "dense weight", "tune nDCG@10", "tune R@10", "held-out nDCG@10", "held-out R@10"],
                [
                    [
                        r["fusion"],
                        r["weight"],
                        r["tune_ndcg@10"],
                        r["tune_recall@10"],
                        r["held_out_ndcg@10"],
                        r["held_out_recall@10"],
                    ]
                    for r in sweep["rows"]
                ],
            )
        )
    gate = record.get("gate")
    if gate:
        text += (
            f"\n\nQuality gate of the {record['backend']} backend against {gate['reference_backend']} on the same "
            f"queries (holds when nDCG@10 is within {GATE_NDCG_POINTS} point): "
            f"{'holds' if gate['holds'] else 'FAILS'}. Cosine between the two backends' vectors of the "
            f"{gate['passages']:,} passages: mean {gate['cosine_mean']}, min {gate['cosine_min']}.\n\n"
            + markdown_table(
                ["mode", f"nDCG@10 {record['backend']}", f"nDCG@10 {gate['reference_backend']}", "Δ nDCG@10", "Δ R@10"],
                [
                    [name, g["ndcg@10"], g["reference_ndcg@10"], g["delta_ndcg@10"], g["delta_recall@10"]]
                    for name, g in gate["modes"].items()
                ],
            )
        )
    return text


def quality_plot(record: Mapping[str, Any], path: Path) -> None:
    fig, ax = new_figure(f"Quality vs latency: {record['dataset']['name']}", "search p50 (ms)", "score ×100")
    for mode, f in record["modes"].items():
        ax.scatter([f["search_p50_ms"]], [f["ndcg@10"]], marker="o", label=f"{mode} nDCG@10")
        ax.scatter([f["search_p50_ms"]], [f["recall@10"]], marker="^", label=f"{mode} R@10")
    ax.legend(fontsize=8)
    save_figure(fig, path)
