"""Per-article caps and duplicate folding over a ranked list (pure; vectors come from a table)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from semsearch.search.diversify import diversify
from semsearch.search.fusion import Candidates

ARTICLE = {1: "a", 2: "a", 3: "a", 4: "b", 5: "c", 6: "b"}
BASE = np.eye(6, dtype=np.float32)
VECTORS = {pid: BASE[pid - 1] for pid in ARTICLE}
VECTORS[5] = BASE[3] * 0.999 + BASE[0] * 0.04  # passage 5 (article c) is nearly passage 4 (article b)
VECTORS[5] /= np.linalg.norm(VECTORS[5])
RANKED = Candidates.of([1, 2, 3, 4, 5, 6], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4])


def vectors_of(ids: Sequence[int]) -> npt.NDArray[np.float32]:
    return np.stack([VECTORS[i] for i in ids])


def picked(k: int, per_article: int, threshold: float) -> list[tuple[int, list[str]]]:
    picks = diversify(RANKED, ARTICLE.__getitem__, vectors_of, k, per_article, threshold)
    return [(p.passage_id, p.duplicates) for p in picks]


def test_cap_keeps_at_most_n_passages_per_article_and_fills_k_from_below() -> None:
    assert picked(4, per_article=2, threshold=2.0) == [(1, []), (2, []), (4, []), (5, [])]
    assert picked(3, per_article=1, threshold=2.0) == [(1, []), (4, []), (5, [])]


def test_zero_turns_the_cap_off() -> None:
    assert [pid for pid, _ in picked(4, per_article=0, threshold=2.0)] == [1, 2, 3, 4]


def test_a_near_identical_passage_folds_into_the_better_hit() -> None:
    assert picked(4, per_article=0, threshold=0.95) == [(1, []), (2, []), (3, []), (4, ["c"])]
    assert picked(5, per_article=0, threshold=0.95)[-1] == (6, [])


def test_fewer_candidates_than_k_return_what_there_is() -> None:
    assert len(picked(10, per_article=1, threshold=0.95)) == 2  # a, b (c folded into b)
