"""Shaping a ranked list for a reader: near-identical passages collapse into one hit, and no article
takes more than its share of the top k. Pure functions; vectors are looked up through a callback."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from semsearch.search.fusion import Candidates


@dataclass
class Pick:
    """A kept candidate and the articles whose near-identical passages it stands for."""

    score: float
    passage_id: int
    article_id: str
    duplicates: list[str] = field(default_factory=list)


def diversify(
    ranked: Candidates,
    article_of: Callable[[int], str],
    vectors_of: Callable[[Sequence[int]], npt.NDArray[np.float32]],
    k: int,
    per_article: int,
    duplicate_threshold: float,
) -> list[Pick]:
    """The first k candidates of `ranked` that are neither near-duplicates of a kept one nor over the cap.

    A candidate whose cosine to a kept passage is at least `duplicate_threshold` folds into it (its article
    is listed once in that hit's `duplicates`), also when it ranks below the k-th hit (down to position 2k);
    `per_article` = 0
    and a threshold above 1 turn each rule off. Candidates dropped by the cap are not lost: they stay
    reachable through their article.
    """
    picks: list[Pick] = []
    per: dict[str, int] = {}
    kept_at: dict[int, int] = {}  # position in `ranked` -> index in picks
    collapse = duplicate_threshold <= 1.0
    # Once k are kept, candidates down to this position may still fold into them.
    horizon = 2 * k if collapse else k
    step = max(2 * k, 32)
    seen: npt.NDArray[np.float32] | None = None  # vectors of ranked[:hi]
    ids, scores = ranked.ids.tolist(), ranked.scores.tolist()
    for lo in range(0, len(ids), step):
        hi = min(len(ids), lo + step)
        folds: dict[int, npt.NDArray[np.intp]] = {}
        if collapse:
            chunk = vectors_of(ids[lo:hi])
            seen = chunk if seen is None else np.vstack([seen, chunk])
            near = (chunk @ seen.T) >= duplicate_threshold
            near &= np.arange(hi)[None, :] < np.arange(lo, hi)[:, None]  # only earlier candidates
            folds = {lo + int(i): np.flatnonzero(near[i]) for i in np.flatnonzero(near.any(axis=1))}
        for n in range(lo, hi):
            if len(picks) == k and n >= horizon:
                return picks
            score, pid = scores[n], ids[n]
            if n in folds:
                owner = next((kept_at[int(j)] for j in folds[n] if int(j) in kept_at), None)
                if owner is not None:
                    hit, article = picks[owner], article_of(pid)
                    if article != hit.article_id and article not in hit.duplicates:
                        hit.duplicates.append(article)
                    continue
            if len(picks) == k:
                continue  # full: later candidates only fold into kept hits
            article = article_of(pid)
            if per_article and per.get(article, 0) >= per_article:
                continue
            per[article] = per.get(article, 0) + 1
            kept_at[n] = len(picks)
            picks.append(Pick(score, pid, article))
    return picks
