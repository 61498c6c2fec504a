"""Fusion of dense and lexical rankings: pure functions, checked by hand."""

from __future__ import annotations

import pytest

from search.fusion import best_first, fuse, min_max, reciprocal_rank, weighted


def test_min_max_maps_each_list_onto_zero_to_one() -> None:
    assert min_max({1: 0.2, 2: 0.6, 3: 0.4}) == pytest.approx({1: 0.0, 2: 1.0, 3: 0.5})
    assert min_max({7: 3.0, 8: 3.0}) == {7: 1.0, 8: 1.0}
    assert min_max({}) == {}


def test_weighted_fusion_is_a_convex_combination_with_zero_for_missing() -> None:
    dense = {1: 0.9, 2: 0.5, 3: 0.7}  # normalised: 1 -> 1.0, 2 -> 0.0, 3 -> 0.5
    lexical = {2: 12.0, 4: 4.0}  # normalised: 2 -> 1.0, 4 -> 0.0
    fused = weighted(dense, lexical, dense_weight=0.4)
    assert fused == pytest.approx({1: 0.4, 2: 0.6, 3: 0.2, 4: 0.0})
    assert weighted(dense, lexical, 1.0) == pytest.approx({1: 1.0, 2: 0.0, 3: 0.5, 4: 0.0})


def test_equal_weight_rrf_is_plain_reciprocal_rank_fusion() -> None:
    dense = {1: 0.9, 2: 0.8}
    lexical = {2: 5.0, 3: 4.0}
    fused = reciprocal_rank(dense, lexical)
    assert fused == pytest.approx({1: 1 / 61, 2: 1 / 62 + 1 / 61, 3: 1 / 62})
    assert [pid for _, pid in best_first(fused)] == [2, 1, 3]


def test_fuse_dispatches_and_refuses_unknown_methods() -> None:
    assert fuse("rrf", {1: 1.0}, {}, 0.5) == pytest.approx({1: 1 / 61})
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse("max", {}, {}, 0.5)


def test_best_first_breaks_ties_by_passage_id() -> None:
    assert best_first({5: 1.0, 2: 1.0, 9: 2.0}) == [(2.0, 9), (1.0, 2), (1.0, 5)]
