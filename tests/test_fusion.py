"""Fusion of dense and lexical rankings: pure functions, checked by hand and against the plain formulas."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semsearch.search.fusion import Candidates, best_first, fuse, min_max, reciprocal_rank, weighted


def c(scores: dict[int, float]) -> Candidates:
    return Candidates.of(list(scores.keys()), list(scores.values()))


def as_dict(found: Candidates) -> dict[int, float]:
    return dict(zip(found.ids.tolist(), found.scores.tolist(), strict=True))


def test_min_max_maps_each_list_onto_zero_to_one() -> None:
    assert as_dict(min_max(c({1: 0.2, 2: 0.6, 3: 0.4}))) == pytest.approx({1: 0.0, 2: 1.0, 3: 0.5})
    assert as_dict(min_max(c({7: 3.0, 8: 3.0}))) == {7: 1.0, 8: 1.0}
    assert as_dict(min_max(c({}))) == {}


def test_weighted_fusion_is_a_convex_combination_with_zero_for_missing() -> None:
    dense = c({1: 0.9, 2: 0.5, 3: 0.7})  # normalised: 1 -> 1.0, 2 -> 0.0, 3 -> 0.5
    lexical = c({2: 12.0, 4: 4.0})  # normalised: 2 -> 1.0, 4 -> 0.0
    fused = weighted(dense, lexical, dense_weight=0.4)
    assert as_dict(fused) == pytest.approx({1: 0.4, 2: 0.6, 3: 0.2, 4: 0.0})
    assert as_dict(weighted(dense, lexical, 1.0)) == pytest.approx({1: 1.0, 2: 0.0, 3: 0.5, 4: 0.0})


def test_equal_weight_rrf_is_plain_reciprocal_rank_fusion() -> None:
    dense = c({1: 0.9, 2: 0.8})
    lexical = c({2: 5.0, 3: 4.0})
    fused = reciprocal_rank(dense, lexical)
    assert as_dict(fused) == pytest.approx({1: 1 / 61, 2: 1 / 62 + 1 / 61, 3: 1 / 62})
    assert best_first(fused).ids.tolist() == [2, 1, 3]


def test_rrf_gives_equal_scores_one_rank_whatever_their_passage_ids() -> None:
    fused = reciprocal_rank(c({9: 1.0, 4: 1.0, 5: 0.5}), c({}), dense_weight=1.0)
    assert as_dict(fused) == pytest.approx({4: 2 / 61, 9: 2 / 61, 5: 2 / 63})


def test_fuse_dispatches_and_refuses_unknown_methods() -> None:
    assert as_dict(fuse("rrf", c({1: 1.0}), c({}), 0.5)) == pytest.approx({1: 1 / 61})
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse("max", c({}), c({}), 0.5)


def test_best_first_breaks_ties_by_passage_id() -> None:
    ranked = best_first(c({5: 1.0, 2: 1.0, 9: 2.0}))
    assert list(zip(ranked.scores.tolist(), ranked.ids.tolist(), strict=True)) == [(2.0, 9), (1.0, 2), (1.0, 5)]


def test_ids_and_scores_must_pair_up() -> None:
    with pytest.raises(ValueError, match="3 passage ids but 2 scores"):
        Candidates.of([1, 2, 3], [0.5, 0.4])


def plain_weighted(dense: dict[int, float], lexical: dict[int, float], w: float) -> dict[int, float]:
    """The textbook formula over dicts, term by term in the same order."""

    def norm(s: dict[int, float]) -> dict[int, float]:
        if not s:
            return {}
        low, high = min(s.values()), max(s.values())
        return dict.fromkeys(s, 1.0) if high <= low else {p: (v - low) / (high - low) for p, v in s.items()}

    a, b = norm(dense), norm(lexical)
    return {p: w * a.get(p, 0.0) + (1 - w) * b.get(p, 0.0) for p in a.keys() | b.keys()}


scores = st.dictionaries(st.integers(0, 60), st.floats(-5, 50, allow_nan=False, width=32), max_size=40)


@given(scores, scores, st.sampled_from([0.0, 0.3, 0.5, 1.0]))
def test_weighted_gives_exactly_the_plain_formula(dense: dict[int, float], lexical: dict[int, float], w: float) -> None:
    assert as_dict(weighted(c(dense), c(lexical), w)) == plain_weighted(dense, lexical, w)


def plain_rrf(dense: dict[int, float], lexical: dict[int, float], w: float, k: int = 60) -> dict[int, float]:
    """RRF with competition ranks: a candidate's rank is one more than the number of candidates scoring higher."""
    fused: dict[int, float] = {}
    for scores, weight in ((dense, w), (lexical, 1 - w)):
        for pid, score in scores.items():
            rank = 1 + sum(1 for other in scores.values() if other > score)
            fused[pid] = fused.get(pid, 0.0) + 2 * weight / (k + rank)
    return fused


@given(scores, scores, st.sampled_from([0.0, 0.3, 0.5, 1.0]))
def test_rrf_and_its_order_are_exactly_the_plain_formula(
    dense: dict[int, float], lexical: dict[int, float], w: float
) -> None:
    expected = plain_rrf(dense, lexical, w)
    fused = reciprocal_rank(c(dense), c(lexical), w)
    assert as_dict(fused) == expected
    assert best_first(fused).ids.tolist() == sorted(expected, key=lambda p: (-expected[p], p))
