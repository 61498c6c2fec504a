"""Cutting texts into model calls: by length, within a budget of padded tokens."""

from __future__ import annotations

from semsearch.index.model.batching import batches_by_length


def test_a_token_budget_puts_short_texts_in_bigger_calls() -> None:
    lengths = [100, 10, 12, 300, 11, 90, 10]
    batches = batches_by_length(lengths, 8, tokens=220)
    assert batches == [[3], [0, 5], [2, 4, 1, 6]]  # longest first; a text over the budget is a call of its own
    assert all(len(b) * lengths[b[0]] <= 220 for b in batches if lengths[b[0]] <= 220)
    assert batches_by_length(lengths, 2, tokens=10_000) == batches_by_length(lengths, 2)  # rows still cap a call
    assert sorted(n for b in batches for n in b) == list(range(len(lengths)))
