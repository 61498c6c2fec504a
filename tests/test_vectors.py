"""The vector index follows the corpus size: exact below the threshold, HNSW tuned for recall above it."""

from __future__ import annotations

import numpy as np

from semsearch.index.storage.vectors import (
    RECALL_TARGET,
    build_vector_index,
    probe_queries,
    recall_at_k,
    recall_with_ties,
)


def clustered(count: int, seed: int = 3, dim: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    points = centres[rng.integers(20, size=count)] + 0.7 * rng.standard_normal((count, dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def test_recall_at_k_by_hand() -> None:
    exact = np.array([[1, 2, 3], [4, 5, -1]])
    found = np.array([[3, 9, 1], [5, 4, 7]])
    assert recall_at_k(exact, found) == 4 / 5


def test_below_the_threshold_search_is_exact_under_stable_ids() -> None:
    vectors = clustered(500)
    ids = np.arange(500, dtype=np.int64) * 3 + 7  # sparse ids, as after deletes
    index, info = build_vector_index(ids, vectors, ann_threshold=1000)
    assert info.type == "IDMap2,Flat" and info.recall_at_10 == 1.0
    queries = probe_queries(vectors, 20)
    _, found = index.search(queries, 10)
    brute = ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :10]]
    assert (found == brute).all()


def test_above_the_threshold_hnsw_meets_the_recall_target() -> None:
    vectors = clustered(3000)
    ids = np.arange(3000, dtype=np.int64)
    index, info = build_vector_index(ids, vectors, ann_threshold=1000)
    assert info.type == "IDMap2,HNSW32" and info.params["efSearch"] >= 16
    assert info.recall_at_10 >= RECALL_TARGET and info.probe_queries == 200
    # The recorded recall holds on other queries from the same distribution.
    queries = probe_queries(vectors, 100, seed=99)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    _, found = index.search(queries, 10)
    assert recall_at_k(exact, found) >= RECALL_TARGET - 0.02


def test_recall_counts_a_passage_tied_with_the_kth_as_found() -> None:
    exact = np.array([[0.9, 0.8, 0.7], [0.5, 0.4, -np.inf]], dtype=np.float32)
    found = np.array([[0.9, 0.7, 0.6], [0.5, 0.4, 0.3]], dtype=np.float32)
    assert recall_with_ties(exact, found) == 4 / 5


def test_a_corpus_of_copies_still_gets_its_graph() -> None:
    """Every vector stored three times (a story filed by three wires): the exact top 10 is one of many equal
    choices, and the graph that finds equally good passages meets the target."""
    vectors = np.repeat(clustered(1000), 3, axis=0)
    index, info = build_vector_index(np.arange(len(vectors), dtype=np.int64), vectors, ann_threshold=1000)
    assert info.type == "IDMap2,HNSW32" and info.recall_at_10 >= RECALL_TARGET
