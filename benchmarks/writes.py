"""`bench writes`: what a write costs on a segmented index at 100k and 1M passages, and what segments cost
searches, beside their baselines in the same run: one-article HTTP writes against a write that rewrites the
whole index (as every write did before segments), hybrid search on the merge policy's usual segment count
against one segment, a write feed under search load, disk after many writes against a fresh build, server
memory by part, and SQuAD quality of an index written in 50 writes against a one-shot build."""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from semsearch.benchmarks.report import markdown_table
from semsearch.benchmarks.timing import latency_summary, time_calls
from semsearch.index.model.embedder import Embedder
from semsearch.index.reading.articles import Article
from semsearch.index.storage.lexical import ANALYZER
from semsearch.index.storage.store import StoredIndex, open_index
from semsearch.index.writing.builder import write_articles
from semsearch.index.writing.merging import optimize
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings


def article_record(article: Article, article_id: str) -> dict[str, Any]:
    return {
        "id": article_id,
        "title": article.title,
        "body": article.body,
        "date": article.date,
        "source": article.source,
    }


def http_writes(base: str, token: str, articles: Sequence[Article], prefix: str) -> list[float]:
    """Milliseconds from sending `PUT /articles/{id}` of each new article to its answer, which comes once the
    server serves the commit holding it."""
    out = []
    with httpx.Client(base_url=base, timeout=600, headers={"Authorization": f"Bearer {token}"}) as client:
        for n, article in enumerate(articles):
            article_id = f"{prefix}-{n}"
            started = time.perf_counter()
            response = client.put(f"/articles/{article_id}", json=article_record(article, article_id))
            out.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return out


def rebuild_writes(settings: Settings, embedder: Embedder, articles: Sequence[Article], prefix: str) -> list[float]:
    """Milliseconds of the same one-article writes made the way every write was made before segments: the
    write, then the whole index rewritten as one segment (from stored vectors: nothing embedded again)."""
    out = []
    for n, article in enumerate(articles):
        started = time.perf_counter()
        write_articles(settings, [_renamed(article, f"{prefix}-{n}")], embedder=embedder, merge=False)
        optimize(settings)
        out.append((time.perf_counter() - started) * 1000)
    return out


def _renamed(article: Article, article_id: str) -> Article:
    return Article(article_id, article.title, article.body, article.date, article.source)


def search_p50(settings: Settings, embedder: Embedder, texts: Sequence[str], runs: int) -> dict[str, Any]:
    """Hybrid search (k=10) in process, whole (encode included) and retrieval alone (vector and BM25 top-k
    over the segments, from vectors encoded beforehand): median of each run's p50."""
    searcher = Searcher.open(settings, embedder)
    try:
        vectors = searcher.embedder.embed_queries(list(texts))
        for text in texts[:10]:
            searcher.search(text, 10)
        whole = [latency_summary(time_calls(lambda t: searcher.search(t, 10), texts))["p50_ms"] for _ in range(runs)]
        index = searcher.index
        terms = [ANALYZER.terms(t) for t in texts]
        pairs = list(zip(vectors, terms, strict=True))

        def retrieve(pair: tuple[Any, list[str]]) -> None:
            index.search(pair[0][None, :], 100)
            index.lexical_search(pair[1], 100)

        retrieval = [latency_summary(time_calls(retrieve, pairs))["p50_ms"] for _ in range(runs)]
        return {
            "segments": len(index.segments),
            "search_p50_ms": round(statistics.median(whole), 3),
            "search_p50_ms_runs": [round(v, 3) for v in whole],
            "retrieval_p50_ms": round(statistics.median(retrieval), 3),
            "retrieval_p50_ms_runs": [round(v, 3) for v in retrieval],
        }
    finally:
        searcher.close()


def folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def disk_after_writes(
    settings: Settings, embedder: Embedder, articles: Sequence[Article], writes: int, work: Path
) -> dict[str, Any]:
    """Disk of the index after `writes` one-article writes (with the merges they trigger), against a fresh
    build of the same corpus (the same index merged into one segment, as a build makes it)."""
    started = time.perf_counter()
    merges = 0
    for n in range(writes):
        summary = write_articles(
            settings, [_renamed(articles[n % len(articles)], f"disk-{n}")], embedder=embedder, merge=True
        )
        merges += len(summary.merges)
    seconds = time.perf_counter() - started
    index = open_index(settings.index, verify=False)
    try:
        segments, deleted = len(index.segments), sum(s["deleted"] for s in index.segment_stats())
    finally:
        index.close()
    after = folder_bytes(settings.index)
    fresh = settings.replace(index=work / "fresh")
    shutil.rmtree(fresh.index, ignore_errors=True)
    shutil.copytree(settings.index, fresh.index)
    optimize(fresh)  # one segment of the same live passages, as a build writes it; clean-up drops the rest
    fresh_bytes = folder_bytes(fresh.index)
    shutil.rmtree(fresh.index, ignore_errors=True)
    return {
        "writes": writes,
        "merges": merges,
        "seconds": round(seconds, 1),
        "segments": segments,
        "deleted_passages": deleted,
        "bytes": after,
        "fresh_bytes": fresh_bytes,
        "ratio": round(after / fresh_bytes, 3),
    }


def memory_parts(index: StoredIndex) -> dict[str, int]:
    """Bytes a loaded index holds in memory, by part."""
    dimension = index.manifest.dimension
    vectors = sum(segment.rows * dimension * 4 for segment in index.segments)  # in the graph, or flat
    graph = sum(segment.graph_bytes() for segment in index.segments)
    postings = 0
    for segment in index.segments:
        if segment.postings is not None:
            p = segment.postings
            postings += p.indptr.nbytes + p.rows.nbytes + p.freqs.nbytes + p.lengths.nbytes + 8 * p.size
    metadata = (
        index.article_vectors.nbytes
        + index.passage_articles.nbytes * 3
        + sum(s.ids.nbytes + s.owners.nbytes for s in index.segments)
    )
    return {"vectors": vectors, "graph": graph, "bm25": postings, "metadata_arrays": metadata}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def http_search_p99(base: str, texts: Sequence[str], seconds: float, concurrency: int) -> dict[str, Any]:
    from semsearch.benchmarks.latency import http_load

    return http_load(base, texts, concurrency, max_requests=10**9, max_seconds=seconds)


def mb(value: int) -> float:
    return round(value / 2**20, 1)


def writes_markdown(record: Mapping[str, Any]) -> str:
    sizes = record["sizes"]
    headers = [
        "passages",
        "segments",
        "HTTP write p50 ms",
        "rebuild write p50 ms",
        "ratio",
        "search p50 ms (segments / one)",
        "ratio",
        "retrieval p50 ms (segments / one)",
        "ratio",
    ]
    rows = []
    for s in sizes:
        w, base = s["write"], s.get("rebuild")
        tiered, single = s["search"]["tiered"], s["search"]["single"]
        rows.append(
            [
                s["passages"],
                tiered["segments"],
                w["p50_ms"],
                base["p50_ms"] if base else base_note(s),
                round(w["p50_ms"] / base["p50_ms"], 4) if base else "-",
                f"{tiered['search_p50_ms']} / {single['search_p50_ms']}",
                round(tiered["search_p50_ms"] / single["search_p50_ms"], 3),
                f"{tiered['retrieval_p50_ms']} / {single['retrieval_p50_ms']}",
                round(tiered["retrieval_p50_ms"] / single["retrieval_p50_ms"], 3),
            ]
        )
    parts = [
        "Indexes built through the storage layer from seeded synthetic vectors (as `bench ann` draws them) and "
        "text tiled from the bundled news, in the segment sizes the merge policy leaves after writes of "
        f"{record['write_size']} passages, and as one segment; the timed writes are real: `PUT /articles/{{id}}` "
        "of a new news article to a real `semsearch serve` (request to served, the real model). The rebuild "
        "baseline is the same write followed by rewriting the whole index as one segment (what every write did "
        "before segments; vectors reused, nothing embedded again).",
        markdown_table(headers, rows),
    ]
    for s in sizes:
        if "load" in s:
            load, idle = s["load"], s["idle"]
            parts.append(
                f"Load at {s['passages']} passages: {load['concurrency']} clients searching for {load['seconds']} s "
                f"while a writer adds one new article every {load['every']} s: {load['requests']} searches, "
                f"{load['errors']} errors, {load['writes']} writes ({load['write_errors']} failed), slowest write "
                f"{load['write_max_ms']} ms, search p99 {load['p99_ms']} ms against {idle['p99_ms']} ms idle "
                f"({round(load['p99_ms'] / idle['p99_ms'], 2)}x)."
            )
        if "disk" in s:
            d = s["disk"]
            parts.append(
                f"Disk at {s['passages']} passages after {d['writes']} one-article writes ({d['merges']} merges, "
                f"{d['segments']} segments, {d['deleted_passages']} deleted passages held): {mb(d['bytes'])} MiB "
                f"against {mb(d['fresh_bytes'])} MiB for a fresh build of the same corpus ({d['ratio']}x)."
            )
        if "memory" in s:
            m = s["memory"]
            shown = ", ".join(f"{k} {mb(v)} MiB" for k, v in m["parts"].items())
            parts.append(
                f"Server memory at {s['passages']} passages ({m['segments']} segments): RSS {mb(m['rss_bytes'])} "
                f"MiB after loading and serving searches; parts: {shown}."
            )
    q = record.get("quality")
    if q:
        parts.append(
            f"Quality: SQuAD v1.1 dev ({q['queries']} questions), hybrid nDCG@10 {q['one_build']:.2f} for one "
            f"build against {q['writes']:.2f} for the same corpus written in {q['write_count']} writes "
            f"({q['segments']} segments after merges); difference {q['difference']:+.2f}."
        )
    return "\n\n".join(parts)


def writes_plot(record: Mapping[str, Any], path: Path) -> None:
    from semsearch.benchmarks.report import new_figure, save_figure

    fig, ax = new_figure("One-article write, request to served", "passages", "ms (log)")
    sizes = record["sizes"]
    labels = [str(s["passages"]) for s in sizes]
    ax.bar([n - 0.2 for n in range(len(sizes))], [s["write"]["p50_ms"] for s in sizes], 0.4, label="segments")
    rebuilt = [s["rebuild"]["p50_ms"] if "rebuild" in s else 0 for s in sizes]
    ax.bar([n + 0.2 for n in range(len(sizes))], rebuilt, 0.4, label="whole-index rewrite")
    ax.set_xticks(range(len(sizes)), labels)
    ax.set_yscale("log")
    ax.legend()
    save_figure(fig, path)


def base_note(size: Mapping[str, Any]) -> str:
    build = size.get("single_build_seconds")
    return f">= {build * 1000:.0f} (one-segment build)" if build else "-"


def summary(values: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50_ms": round(float(np.median(ordered)), 1),
        "max_ms": round(ordered[-1], 1),
        "min_ms": round(ordered[0], 1),
    }
