"""The best k of a score array with ties broken by position, so that the best k is always the head of the best
k + n: a ranking cut at any depth then begins the same way (pages of a query rely on it)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def top_positions(scores: npt.NDArray[np.floating], k: int) -> npt.NDArray[np.int64]:
    """Positions of the k highest scores, best first; equal scores in ascending position, also at the cut."""
    if k <= 0 or not len(scores):
        return np.zeros(0, dtype=np.int64)
    if k < len(scores):
        cut = scores[np.argpartition(-scores, k - 1)[k - 1]]  # the k-th best score
        above = np.flatnonzero(scores > cut)
        tied = np.flatnonzero(scores == cut)[: k - len(above)]
        chosen = np.concatenate([above, tied])
    else:
        chosen = np.arange(len(scores))
    return chosen[np.lexsort((chosen, -scores[chosen]))].astype(np.int64)
