"""The best k of a score array with ties broken by position, so that the best k is always the head of the best
k + n: a ranking cut at any depth then begins the same way (pages of a query rely on it)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def top_positions(scores: npt.NDArray[np.floating], k: int, ties: bool = False) -> npt.NDArray[np.int64]:
    """Positions of the k highest scores, best first; equal scores in ascending position, also at the cut.
    With `ties`, every score equal to the k-th is kept too (more than k then), so that lists cut apart can be
    merged and cut again exactly."""
    if k <= 0 or not len(scores):
        return np.zeros(0, dtype=np.int64)
    if k < len(scores):
        cut = scores[np.argpartition(-scores, k - 1)[k - 1]]  # the k-th best score
        above = np.flatnonzero(scores > cut)
        tied = np.flatnonzero(scores == cut)
        tied = tied if ties else tied[: k - len(above)]
        chosen = np.concatenate([above, tied])
    else:
        chosen = np.arange(len(scores))
    return chosen[np.lexsort((chosen, -scores[chosen]))].astype(np.int64)


def merge_top(
    scores: npt.NDArray[np.floating], ids: npt.NDArray[np.int64], k: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The k best of candidate (score, id) pairs gathered from several parts, ties by ascending id: what one
    top-k over the union would give when each part kept its ties at the cut. Pairs with id -1 are padding."""
    real = ids >= 0
    scores, ids = scores[real], ids[real]
    order = np.lexsort((ids, -scores))[:k]
    return scores[order].astype(np.float32), ids[order].astype(np.int64)
