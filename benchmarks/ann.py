"""Approximate-search recall and latency: the engine's index type and candidate settings against exact search.

Sizes: the real corpus (its passage vectors, real questions as queries) and seeded synthetic sets of
clustered, L2-normalised vectors. Recall@10 is the share of the exact top 10 that an index returns.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.benchmarks.report import markdown_table, new_figure, save_figure
from semsearch.benchmarks.timing import latency_summary, time_calls
from semsearch.index.storage.vectors import build_vector_index

Matrix = npt.NDArray[np.float32]
K = 10


def synthetic_vectors(count: int, dim: int, seed: int, latent: int = 32, spread: float = 1.5) -> tuple[Matrix, Matrix]:
    """`count` base vectors and 500 queries from one seeded distribution, L2-normalised.

    Points are drawn around `count // 1000` cluster centres in a `latent`-dimensional space (spread
    `spread` around each centre), mapped linearly into `dim` dimensions, with a little isotropic noise.
    Text embeddings also have a low intrinsic dimension and overlapping topics; at 100k vectors this set
    is harder for IVF than the real SQuAD vectors are at their size (nearest-neighbour cosine about 0.7,
    random pairs about 0), so parameters that reach the recall target here are on the safe side.
    """
    rng = np.random.default_rng(seed)
    clusters = max(8, count // 1000)
    centres = rng.standard_normal((clusters, latent), dtype=np.float32)
    mix = rng.standard_normal((latent, dim), dtype=np.float32) / np.float32(math.sqrt(latent))
    noise = np.float32(0.3 / math.sqrt(dim))

    def draw(n: int) -> Matrix:
        out = np.empty((n, dim), dtype=np.float32)
        for lo in range(0, n, 100_000):
            hi = min(n, lo + 100_000)
            z = centres[rng.integers(clusters, size=hi - lo)]
            z += np.float32(spread) * rng.standard_normal((hi - lo, latent), dtype=np.float32)
            block = z @ mix + noise * rng.standard_normal((hi - lo, dim), dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[lo:hi] = block
        return out

    return draw(count), draw(500)


@dataclass(frozen=True)
class Candidate:
    """One index setting: a FAISS factory string and the search-time knob swept over."""

    factory: str
    knob: str | None = None
    values: tuple[int, ...] = ()


def candidates(count: int, hnsw_max: int) -> list[Candidate]:
    """Exact search, IVF with about sqrt(n) lists (each with at least 39 training points), HNSW up to hnsw_max."""
    found = [Candidate("Flat")]
    nlist = 2 ** round(math.log2(max(16, math.sqrt(count))))
    while nlist > 16 and count < 39 * nlist:
        nlist //= 2
    if count >= 39 * nlist:
        probes = tuple(v for v in (1, 4, 8, 16, 32, 64, 128) if v <= nlist)
        found.append(Candidate(f"IVF{nlist},Flat", "nprobe", probes))
    if count <= hnsw_max:
        found.append(Candidate("HNSW32,Flat", "efSearch", (16, 32, 64, 128)))
    return found


def exact_top(base: Matrix, queries: Matrix, k: int = K) -> npt.NDArray[np.int64]:
    import faiss

    _, ids = faiss.knn(queries, base, k, metric=faiss.METRIC_INNER_PRODUCT)
    return np.asarray(ids, dtype=np.int64)


def recall_at(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64], k: int = K) -> float:
    """Mean share of each query's true top k that `found` holds in its top k."""
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist())) / k for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def measure_candidate(
    candidate: Candidate, base: Matrix, queries: Matrix, truth: npt.NDArray[np.int64], runs: int, seed: int
) -> list[dict[str, Any]]:
    import faiss

    index = faiss.index_factory(base.shape[1], candidate.factory, faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        sample = min(len(base), 64 * int(candidate.factory.split(",")[0].removeprefix("IVF")))
        index.train(base[np.sort(rng.choice(len(base), size=sample, replace=False))])
    index.add(base)
    build_seconds = time.perf_counter() - started
    rows = []
    timed = [queries[i : i + 1] for i in range(min(200, len(queries)))]
    values: tuple[int | None, ...] = candidate.values or (None,)
    for value in values:
        tuned: Any = faiss.downcast_index(index)
        if candidate.knob == "nprobe" and value is not None:
            tuned.nprobe = value
        elif candidate.knob == "efSearch" and value is not None:
            tuned.hnsw.efSearch = value
        _, found = index.search(queries, K)
        per_run = [latency_summary(time_calls(lambda q: index.search(q, K), timed)) for _ in range(runs)]
        rows.append(
            {
                "index": candidate.factory,
                "param": f"{candidate.knob}={value}" if candidate.knob else "",
                "recall@10": round(recall_at(found, truth), 4),
                "p50_ms": round(statistics.median(r["p50_ms"] for r in per_run), 3),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in per_run), 3),
                "build_seconds": round(build_seconds, 2),
                "engine_choice": False,
            }
        )
    return rows


def measure_engine(
    base: Matrix, queries: Matrix, truth: npt.NDArray[np.int64], runs: int, threshold: int, threads: int
) -> dict[str, Any]:
    """The index the engine itself builds for this many vectors at this ANN threshold, as a search sees it."""
    started = time.perf_counter()
    index, info = build_vector_index(np.arange(len(base), dtype=np.int64), base, threshold, threads)
    build_seconds = time.perf_counter() - started
    _, found = index.search(queries, K)
    timed = [queries[i : i + 1] for i in range(min(200, len(queries)))]
    per_run = [latency_summary(time_calls(lambda q: index.search(q, K), timed)) for _ in range(runs)]
    return {
        "index": f"engine: {info.type.removeprefix('IDMap2,')}",
        "param": ",".join(f"{k}={v}" for k, v in info.params.items()),
        "recall@10": round(recall_at(found, truth), 4),
        "build_recall@10": info.recall_at_10,
        "p50_ms": round(statistics.median(r["p50_ms"] for r in per_run), 3),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in per_run), 3),
        "build_seconds": round(build_seconds, 2),
        "engine_choice": True,
    }


def measure_size(
    label: str,
    base: Matrix,
    queries: Matrix,
    runs: int,
    seed: int,
    hnsw_max: int,
    engine_max: int,
    threshold: int,
    threads: int,
) -> dict[str, Any]:
    truth = exact_top(base, queries)
    rows = []
    for candidate in candidates(len(base), hnsw_max):
        print(f"{label}: {candidate.factory}", file=sys.stderr)
        rows.extend(measure_candidate(candidate, base, queries, truth, runs, seed))
    if len(base) <= engine_max:
        print(f"{label}: the engine's own choice", file=sys.stderr)
        rows.append(measure_engine(base, queries, truth, runs, threshold, threads))
    return {"label": label, "vectors": len(base), "queries": len(queries), "rows": rows}


def ann_markdown(record: Mapping[str, Any]) -> str:
    headers = ["vectors", "index", "search param", "recall@10", "p50 ms", "p99 ms", "build s", "engine's choice"]
    rows = [
        [
            size["label"],
            r["index"],
            r["param"],
            r["recall@10"],
            r["p50_ms"],
            r["p99_ms"],
            r["build_seconds"],
            "yes" if r["engine_choice"] else "",
        ]
        for size in record["sizes"]
        for r in size["rows"]
    ]
    return (
        f"Recall@10 against exact inner-product search; latency of one query at a time "
        f"(median of {record['runs']} runs over 200 queries). Synthetic sets: seed {record['seed']}, "
        f"{record['dimension']} dimensions, clusters in a 32-dimensional latent space mapped up, L2-normalised "
        f"(see `synthetic_vectors`). HNSW is built only up to "
        f"{record['hnsw_max']:,} vectors (its build takes too long on two cores beyond that).\n\n"
        + markdown_table(headers, rows)
    )


def ann_plot(record: Mapping[str, Any], path: Path) -> None:
    fig, ax = new_figure("Recall@10 vs latency per index setting", "p50 per query (ms, log)", "recall@10")
    ax.set_xscale("log")
    for size in record["sizes"]:
        by_index: dict[str, list[Mapping[str, Any]]] = {}
        for row in size["rows"]:
            by_index.setdefault(row["index"], []).append(row)
        for name, rows in by_index.items():
            ax.plot(
                [r["p50_ms"] for r in rows],
                [r["recall@10"] for r in rows],
                marker="o",
                label=f"{size['label']}: {name}",
            )
    ax.legend(fontsize=7)
    save_figure(fig, path)


def size_label(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M synthetic"
    if count >= 1000 and count % 1000 == 0:
        return f"{count // 1000}k synthetic"
    return f"{count} synthetic"
