"""How texts are cut into model calls: by length, so a call pads little, and within a token budget."""

from __future__ import annotations

from collections.abc import Sequence


def batches_by_length(lengths: Sequence[int], batch_size: int, tokens: int = 0) -> list[list[int]]:
    """Positions cut into batches of at most `batch_size` texts, longest first (ties in input order): each batch
    holds texts of about the same length, so it pads little. With `tokens`, a batch also holds at most that many
    padded tokens (its texts times its longest), so short texts go in bigger batches; a text longer than the
    budget is a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda n: -lengths[n])
    if tokens <= 0:
        return [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    for n in order:
        current = batches[-1] if batches else None
        if current is None or len(current) >= batch_size or (len(current) + 1) * lengths[current[0]] > tokens:
            batches.append([n])
        else:
            current.append(n)
    return batches
