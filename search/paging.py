"""Pages and orders of a ranked list: how deep to take candidates for hits offset+1 .. offset+k, how a later
block of hits continues the earlier ones, and the newest-first order of `sort=date`. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

import numpy as np

from semsearch.search.diversify import Pick
from semsearch.search.fusion import Candidates

# Candidates taken from each retriever before fusion, the article blend and diversification, at the least.
MIN_CANDIDATES = 100
# The depth grows in steps of this many hits, so pages of one query inside a step rank the same candidates.
PAGE_BLOCK = 50

T = TypeVar("T")


def candidate_depth(wanted: int) -> int:
    """Candidates per retriever for the first `wanted` (offset + k) hits: twice `wanted` rounded up to a block of
    50, at least MIN_CANDIDATES. Every request for up to 50 hits ranks the same candidates as k=10."""
    return max(MIN_CANDIDATES, 2 * PAGE_BLOCK * blocks(wanted))


def blocks(wanted: int) -> int:
    """How many blocks of PAGE_BLOCK hits the first `wanted` hits span (at least one)."""
    return max(1, -(-wanted // PAGE_BLOCK))


def top(ranked: Candidates, n: int) -> Candidates:
    """The first `n` of a best-first list."""
    return Candidates(ranked.ids[:n], ranked.scores[:n])


def ahead(shown: Sequence[Pick], ranked: Candidates) -> Candidates:
    """`ranked` with the hits already shown (earlier blocks) moved to its head, in their order and with their
    scores, so that diversifying it keeps them as they were and continues after them."""
    if not shown:
        return ranked
    ids = np.array([p.passage_id for p in shown], dtype=np.int64)
    rest = ~np.isin(ranked.ids, ids)
    scores = np.array([p.score for p in shown], dtype=np.float64)
    return Candidates(np.concatenate([ids, ranked.ids[rest]]), np.concatenate([scores, ranked.scores[rest]]))


def newest_first(ranked: Sequence[T], dates: Mapping[int, str | None]) -> list[T]:
    """`ranked` (best first) reordered by `dates[position]` descending (ISO 8601 text); equal dates keep their
    relevance order and undated items come after all dated ones."""
    dated = sorted((n for n in range(len(ranked)) if dates.get(n)), key=lambda n: dates[n] or "", reverse=True)
    undated = [n for n in range(len(ranked)) if not dates.get(n)]
    return [ranked[n] for n in (*dated, *undated)]
