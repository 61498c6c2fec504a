"""Fusing a dense and a lexical ranking into one: pure functions over {passage id: score}."""

from __future__ import annotations

from collections.abc import Mapping

from index.settings import FUSIONS

Scores = Mapping[int, float]
RRF_K = 60


def min_max(scores: Scores) -> dict[int, float]:
    """Scores rescaled to [0, 1] within this candidate list (all 1.0 when they are equal)."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high <= low:
        return dict.fromkeys(scores, 1.0)
    return {pid: (score - low) / (high - low) for pid, score in scores.items()}


def weighted(dense: Scores, lexical: Scores, dense_weight: float) -> dict[int, float]:
    """Convex combination of min-max normalised scores; a passage missing from one list gets 0 there."""
    a, b = min_max(dense), min_max(lexical)
    return {pid: dense_weight * a.get(pid, 0.0) + (1 - dense_weight) * b.get(pid, 0.0) for pid in a.keys() | b.keys()}


def reciprocal_rank(dense: Scores, lexical: Scores, dense_weight: float = 0.5, k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion, sum of w / (k + rank) over both lists; equal weights give plain RRF
    (scaled by 2 so the weights sum to 2 like the unweighted form)."""
    fused: dict[int, float] = {}
    for scores, weight in ((dense, dense_weight), (lexical, 1 - dense_weight)):
        ordered = sorted(scores, key=lambda pid: (-scores[pid], pid))
        for rank, pid in enumerate(ordered, start=1):
            fused[pid] = fused.get(pid, 0.0) + 2 * weight / (k + rank)
    return fused


def fuse(method: str, dense: Scores, lexical: Scores, dense_weight: float) -> dict[int, float]:
    if method == "weighted":
        return weighted(dense, lexical, dense_weight)
    if method == "rrf":
        return reciprocal_rank(dense, lexical, dense_weight)
    raise ValueError(f"unknown fusion {method!r}; use one of {', '.join(FUSIONS)}")


def best_first(scores: Scores) -> list[tuple[float, int]]:
    """(score, passage id) by descending score; ties go to the lower passage id, so order is stable."""
    return sorted(((score, pid) for pid, score in scores.items()), key=lambda item: (-item[0], item[1]))
