"""Shaping a ranked list for a reader: near-identical passages collapse into one hit, and no article
takes more than its share of the top k. Pure functions; vectors are looked up through a callback."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass
class Pick:
    """A kept candidate and the articles whose near-identical passages it stands for."""

    score: float
    passage_id: int
    article_id: str
    duplicates: list[str] = field(default_factory=list)


def diversify(
    ranked: Sequence[tuple[float, int]],
    article_of: Callable[[int], str],
    vectors_of: Callable[[Sequence[int]], npt.NDArray[np.float32]],
    k: int,
    per_article: int,
    duplicate_threshold: float,
) -> list[Pick]:
    """The first k candidates of `ranked` that are neither near-duplicates of a kept one nor over the cap.

    A candidate whose cosine to a kept passage is at least `duplicate_threshold` folds into it (its article
    is listed once in that hit's `duplicates`), also when it ranks below the k-th hit; `per_article` = 0
    and a threshold above 1 turn each rule off. Candidates dropped by the cap are not lost: they stay
    reachable through their article.
    """
    picks: list[Pick] = []
    per: dict[str, int] = {}
    collapse = duplicate_threshold <= 1.0
    kept_vectors: list[npt.NDArray[np.float32]] = []
    batch = max(4 * k, 32)
    for lo in range(0, len(ranked), batch):
        chunk = ranked[lo : lo + batch]
        vectors = vectors_of([pid for _, pid in chunk]) if collapse else None
        for n, (score, pid) in enumerate(chunk):
            article = article_of(pid)
            if collapse and vectors is not None and kept_vectors:
                similar = np.stack(kept_vectors) @ vectors[n]
                best = int(np.argmax(similar))
                if float(similar[best]) >= duplicate_threshold:
                    owner = picks[best]
                    if article != owner.article_id and article not in owner.duplicates:
                        owner.duplicates.append(article)
                    continue
            if len(picks) == k:
                if not collapse:
                    return picks
                continue  # full: later candidates only fold into kept hits
            if per_article and per.get(article, 0) >= per_article:
                continue
            per[article] = per.get(article, 0) + 1
            picks.append(Pick(score, pid, article))
            if vectors is not None:
                kept_vectors.append(vectors[n])
    return picks
