"""Latency: query encoding, ranking and whole in-process search; then real HTTP under concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from semsearch.benchmarks.loadgen import run_load
from semsearch.benchmarks.report import markdown_table, new_figure, save_figure
from semsearch.benchmarks.timing import across_runs, latency_summary, time_calls
from semsearch.errors import SemsearchError
from semsearch.search.searcher import Searcher


def in_process(searcher: Searcher, texts: Sequence[str], runs: int, k: int = 10) -> dict[str, Any]:
    """Per-stage latency with the default options: encoding alone; ranking a ready vector (vector index,
    BM25, fusion, diversification); and `search` whole (those two plus the passages' metadata)."""
    pairs = [(searcher.encode([t]), t) for t in texts]  # also the warm-up of the encoder
    for text in texts[:10]:
        searcher.search(text, k)
    calls: dict[str, tuple[Callable[[Any], object], Sequence[Any]]] = {
        "encode": (lambda t: searcher.encode([t]), texts),
        "retrieve": (lambda pair: searcher.retrieve(pair[0], [pair[1]], k), pairs),
        "search": (lambda t: searcher.search(t, k), texts),
    }
    return {
        stage: across_runs([latency_summary(time_calls(call, inputs)) for _ in range(runs)])
        for stage, (call, inputs) in calls.items()
    }


def txtai_baseline(python: Path, searcher: Searcher, texts: Sequence[str], runs: int, threads: int) -> dict[str, Any]:
    """txtai's hybrid search p50 on the searcher's own passages and model, in a child process of `python`."""
    job = {
        "model": searcher.embedder.info.path,
        "passages": [stored.passage.text for stored in searcher.index.stored_passages()],
        "queries": list(texts),
        "runs": runs,
        "k": 10,
        "threads": threads,
    }
    # Run as source, from an empty folder: this package's folder on the child's path would shadow its modules
    # (benchmarks/datasets.py is not Hugging Face's `datasets`).
    source = Path(__file__).with_name("txtai_child.py").read_text(encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory() as empty:
        done = subprocess.run(
            [str(python), "-c", source], input=json.dumps(job), capture_output=True, text=True, env=env, cwd=empty,
            timeout=3600,
        )  # fmt: skip
    if done.returncode != 0:
        raise SemsearchError(f"The txtai baseline failed in {python}: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def http_load(
    base: str, texts: Sequence[str], concurrency: int, max_requests: int, max_seconds: float, k: int = 10
) -> dict[str, Any]:
    """`GET /search` from `concurrency` clients until `max_requests` are sent or `max_seconds` pass."""
    done = run_load(base, texts, concurrency, max_requests, max_seconds, k)
    return {
        "requests": len(done.latencies_ms),
        "errors": sum(done.failures.values()),
        "error_kinds": done.failures,
        "seconds": round(done.seconds, 3),
        "qps": round(len(done.latencies_ms) / done.seconds, 1),
        **latency_summary(done.latencies_ms),
    }


def over_http(
    base: str, texts: Sequence[str], levels: Sequence[int], runs: int, max_requests: int, max_seconds: float
) -> dict[str, Any]:
    http_load(base, texts[:20], 1, 20, max_seconds)  # warm-up
    results: dict[str, Any] = {}
    for level in levels:
        done = [http_load(base, texts, level, max_requests, max_seconds) for _ in range(runs)]
        numeric = [{k: v for k, v in d.items() if isinstance(v, int | float)} for d in done]
        merged = across_runs(numeric)
        merged["errors_total"] = sum(d["errors"] for d in done)
        merged["error_kinds"] = [d["error_kinds"] for d in done if d["error_kinds"]]
        results[f"c{level}"] = merged
    return results


def latency_markdown(record: Mapping[str, Any]) -> str:
    headers = ["what", "p50 ms", "p95 ms", "p99 ms", "p50 spread", "QPS", "requests", "errors"]
    rows: list[list[Any]] = []
    for stage, f in record["in_process"].items():
        rows.append([f"in-process {stage}", f["p50_ms"], f["p95_ms"], f["p99_ms"], f["p50_ms_spread"], "", "", ""])
    http = [(level, f, "") for level, f in record["http"].items()]
    http += [(level, f, ", micro-batching off") for level, f in record.get("http_unbatched", {}).items()]
    for level, f, note in http:
        rows.append(
            [
                f"HTTP GET /search, concurrency {level[1:]}{note}",
                f["p50_ms"],
                f["p95_ms"],
                f["p99_ms"],
                f["p50_ms_spread"],
                f["qps"],
                int(f["requests"]),
                f["errors_total"],
            ]
        )
    index = record["index"]
    txtai = record.get("baselines", {}).get("txtai")
    if txtai:
        rows.append(["txtai hybrid search, in-process", txtai["p50_ms"], "", "", txtai["p50_ms_spread"], "", "", ""])
    compared = (
        f"In-process search against txtai {txtai['version']} on the same passages, model and questions: "
        f"{txtai['ratio_search_vs_txtai']:.2f}× its p50.\n\n"
        if txtai
        else ""
    )
    return compared + (
        f"Index: {index['passages']} passages of {index['articles']} articles ({index['corpus']}), backend "
        f"{index['model']['backend']}; "
        f"k=10; {record['query_count']} questions from {record['queries_from']}; each figure is the median "
        f"of {record['runs']} runs (spread = min and max of the runs' p50). HTTP: a real uvicorn on loopback, driven "
        f"by `benchmarks/loadgen.py` (keep-alive HTTP/1.1 on uvloop, in this process, on the same cores), "
        f"at most {record['max_requests']} requests or {record['max_seconds']} s per run.\n\n"
        + markdown_table(headers, rows)
    )


def latency_plot(record: Mapping[str, Any], path: Path) -> None:
    fig, ax = new_figure("Latency (median of runs)", "", "ms")
    labels = [f"in-process\n{s}" for s in record["in_process"]] + [f"HTTP {c}" for c in record["http"]]
    figures = list(record["in_process"].values()) + list(record["http"].values())
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], [f["p50_ms"] for f in figures], width=0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [f["p99_ms"] for f in figures], width=0.4, label="p99")
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.legend()
    save_figure(fig, path)
