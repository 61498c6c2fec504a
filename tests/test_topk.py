"""The best k with ties by position: always the head of a deeper cut, so pages of a ranking never disagree."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from semsearch.index.storage.topk import top_positions

# Few distinct values, so that ties at the cut are the rule (BM25 gives equal scores to equal documents).
scores = st.lists(st.sampled_from([0.0, 0.5, 1.24, 2.0, 3.5]), max_size=60).map(lambda v: np.array(v))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(values=scores, k=st.integers(0, 70), more=st.integers(0, 30))
def test_the_best_k_is_the_head_of_any_deeper_cut_and_a_stable_sort(values: np.ndarray, k: int, more: int) -> None:
    reference = sorted(range(len(values)), key=lambda n: (-values[n], n))[:k]
    assert top_positions(values, k).tolist() == reference
    assert top_positions(values, k + more).tolist()[:k] == reference
