"""Fusing a dense and a lexical ranking into one: pure functions over candidate lists held as arrays.

Arrays rather than {id: score} dicts because ranking runs once per query between the model and the reply,
and the same sums in numpy cost less than building and walking dicts. The arithmetic is float64 and in the
same order as the plain formulas, so scores do not depend on the representation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from semsearch.settings import FUSIONS

RRF_K = 60


@dataclass(frozen=True, eq=False)
class Candidates:
    """Passages and their scores from one ranking: parallel arrays. Each passage id is there at most once (FAISS and
    BM25 return each passage once); fusion adds up the scores of an id given twice."""

    ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]

    @classmethod
    def of(cls, ids: npt.ArrayLike, scores: npt.ArrayLike) -> Candidates:
        found = cls(np.asarray(ids, dtype=np.int64).reshape(-1), np.asarray(scores, dtype=np.float64).reshape(-1))
        if len(found.ids) != len(found.scores):
            raise ValueError(f"{len(found.ids)} passage ids but {len(found.scores)} scores")
        return found

    def __len__(self) -> int:
        return len(self.ids)


def min_max(found: Candidates) -> Candidates:
    """Scores rescaled to [0, 1] within this candidate list (all 1.0 when they are equal)."""
    if not len(found):
        return found
    low, high = found.scores.min(), found.scores.max()
    if high <= low:
        return Candidates(found.ids, np.ones(len(found)))
    return Candidates(found.ids, (found.scores - low) / (high - low))


def _summed(ids: npt.NDArray[np.int64], parts: npt.NDArray[np.float64]) -> Candidates:
    """Each distinct id with the sum of its parts, added in their order."""
    unique, where = np.unique(ids, return_inverse=True)
    sums = np.asarray(np.bincount(where, weights=parts, minlength=len(unique)), dtype=np.float64)
    return Candidates(unique, sums)


def weighted(dense: Candidates, lexical: Candidates, dense_weight: float) -> Candidates:
    """Convex combination of min-max normalised scores; a passage missing from one list gets 0 there."""
    a, b = min_max(dense), min_max(lexical)
    parts = np.concatenate([dense_weight * a.scores, (1 - dense_weight) * b.scores])
    return _summed(np.concatenate([a.ids, b.ids]), parts)


def _ranks(found: Candidates) -> npt.NDArray[np.int64]:
    """1 for the best candidate, one more than the number of better ones for the others: equal scores share a
    rank, so that fusion never depends on passage ids (which follow the order articles were written in)."""
    negated = -np.asarray(found.scores, dtype=np.float64)
    return np.searchsorted(np.sort(negated), negated, side="left").astype(np.int64) + 1


def reciprocal_rank(dense: Candidates, lexical: Candidates, dense_weight: float = 0.5, k: int = RRF_K) -> Candidates:
    """Reciprocal rank fusion, sum of w / (k + rank) over both lists; equal weights give plain RRF
    (scaled by 2 so the weights sum to 2 like the unweighted form)."""
    parts = [2 * weight / (k + _ranks(found)) for found, weight in ((dense, dense_weight), (lexical, 1 - dense_weight))]
    return _summed(np.concatenate([dense.ids, lexical.ids]), np.concatenate(parts))


def fuse(method: str, dense: Candidates, lexical: Candidates, dense_weight: float) -> Candidates:
    if method == "weighted":
        return weighted(dense, lexical, dense_weight)
    if method == "rrf":
        return reciprocal_rank(dense, lexical, dense_weight)
    raise ValueError(f"unknown fusion {method!r}; use one of {', '.join(FUSIONS)}")


def best_first(found: Candidates) -> Candidates:
    """The candidates by descending score; ties go to the lower passage id, so order is stable."""
    order = np.lexsort((found.ids, -found.scores))
    return Candidates(found.ids[order], found.scores[order])
