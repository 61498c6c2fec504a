"""The vector half of a segment: a FAISS index over its rows, exact or approximate by size.

Below a threshold (`segment_threshold`) a segment is exact (a flat inner-product scan). At or above it, an HNSW
graph is built and its search breadth (efSearch) is the smallest that reaches the recall target against exact
search (plus a margin), measured at build time on seeded probe queries; if none does, the segment stays exact.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]

RECALL_TARGET = 0.98
# Probes sit closer to stored vectors than real questions do, so their recall overstates a question's
# (`semsearch bench ann` measures both). The breadth is chosen for the target plus this margin on probes.
PROBE_MARGIN = 0.01
RECALL_K = 10
PROBE_QUERIES = 200
PROBE_SEED = 13
# Gaussian noise of this norm around a stored unit vector gives a probe at cosine ~0.67 to it, about
# where a question sits from its best passage with MiniLM.
PROBE_NOISE = 1.1
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
EF_SEARCH_STEPS = (16, 32, 64, 128, 256, 512)
# In an index past the ANN threshold, a segment this large gets its own graph: an exact scan of every small
# segment would cost more than the graphs, once there are a few of them.
SEGMENT_ANN_MIN = 2_000


def segment_threshold(ann_threshold: int, index_passages: int) -> int:
    """The size from which a segment of an index of `index_passages` gets an HNSW graph: never while the whole
    index is below `ann_threshold` (every search exact), else from `SEGMENT_ANN_MIN` passages (or the threshold,
    if lower)."""
    if index_passages < ann_threshold:
        return index_passages + 1
    return min(ann_threshold, SEGMENT_ANN_MIN)


@dataclass(frozen=True)
class VectorIndexInfo:
    """What kind of vector index a generation holds, recorded in its manifest and shown in /stats."""

    type: str
    params: dict[str, int] = field(default_factory=dict)
    recall_at_10: float = 1.0
    probe_queries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VectorIndexInfo:
        return cls(
            type=str(data["type"]),
            params={str(k): int(v) for k, v in data.get("params", {}).items()},
            recall_at_10=float(data.get("recall_at_10", 1.0)),
            probe_queries=int(data.get("probe_queries", 0)),
        )


def build_vector_index(ids: Ids, vectors: Vectors, ann_threshold: int, threads: int = 1) -> tuple[Any, VectorIndexInfo]:
    """A FAISS index holding `vectors` under `ids`, and what was chosen (with the recall measured)."""
    dimension = vectors.shape[1]
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
    flat.add_with_ids(vectors, ids)
    if len(ids) < max(1, ann_threshold):
        return flat, VectorIndexInfo(type="IDMap2,Flat")
    graph = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    approximate = faiss.IndexIDMap2(graph)
    searching_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, threads))  # queries run FAISS on one thread; a graph build wants them all
    try:
        approximate.add_with_ids(vectors, ids)
    finally:
        faiss.omp_set_num_threads(searching_threads)
    probes = probe_queries(vectors)
    exact, _ = flat.search(probes, RECALL_K)
    recall = 0.0
    for ef in EF_SEARCH_STEPS:
        graph.hnsw.efSearch = ef
        found, _ = approximate.search(probes, RECALL_K)
        recall = recall_with_ties(exact, found)
        if recall >= RECALL_TARGET + PROBE_MARGIN:
            params = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": ef}
            info = VectorIndexInfo(f"IDMap2,HNSW{HNSW_M}", params, round(recall, 4), len(probes))
            return approximate, info
    # No breadth reached the target: exact search is the honest choice, and the manifest says why.
    return flat, VectorIndexInfo(
        type="IDMap2,Flat",
        params={"hnsw_recall_below_target_at_efSearch": EF_SEARCH_STEPS[-1]},
        probe_queries=len(probes),
    )


def configure(index: Any, info: VectorIndexInfo) -> None:
    """Apply the search-time parameters recorded for a loaded index."""
    if "efSearch" in info.params:
        graph: Any = faiss.downcast_index(index.index)
        graph.hnsw.efSearch = info.params["efSearch"]


def is_exact(info: VectorIndexInfo) -> bool:
    return info.type.endswith(",Flat")


def probe_queries(vectors: Vectors, count: int = PROBE_QUERIES, seed: int = PROBE_SEED) -> Vectors:
    """Seeded stand-ins for questions: stored vectors moved by random noise, re-normalised."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors), size=min(count, len(vectors)), replace=False)
    dimension = vectors.shape[1]
    noise = rng.standard_normal((len(rows), dimension)).astype(np.float32)
    noise *= np.float32(PROBE_NOISE / math.sqrt(dimension))
    probes = vectors[np.sort(rows)] + noise
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    return np.ascontiguousarray(probes, dtype=np.float32)


def recall_with_ties(exact: Vectors, found: Vectors, tolerance: float = 1e-5) -> float:
    """Recall@k from scores: the share of each exact top-k row that the approximate row matches, a found
    passage counting when it scores as high as the exact k-th. Passages of equal vectors (a story filed twice)
    are interchangeable at the cut; counting ids alone would call them misses and wrongly reject the graph."""
    hits = total = 0
    for want, got in zip(exact, found, strict=True):
        want = want[np.isfinite(want) & (want > -1e30)]
        if not len(want):
            continue
        cut = want[-1] - tolerance
        got = got[np.isfinite(got) & (got > -1e30)]
        hits += min(len(want), int(np.count_nonzero(got >= cut)))
        total += len(want)
    return hits / total if total else 1.0


def recall_at_k(exact: Ids, found: Ids) -> float:
    """Mean share of each exact top-k row that the approximate row also holds."""
    hits = sum(len(set(e[e >= 0].tolist()) & set(f[f >= 0].tolist())) for e, f in zip(exact, found, strict=True))
    total = int(np.sum(exact >= 0))
    return hits / total if total else 1.0
