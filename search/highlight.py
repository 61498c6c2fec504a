"""Where a query's terms occur in a passage: character spans, found by the same analyzer as BM25."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from functools import lru_cache

from semsearch.index.storage.lexical import ANALYZER

# Analysed passages remembered by text (about 2 KB each): the passages that answer queries recur, and
# analysing every hit's text anew would be the largest part of ranking.
ANALYSED_PASSAGES = 4096


def query_terms(query: str) -> frozenset[str]:
    return frozenset(ANALYZER.terms(query))


@lru_cache(maxsize=ANALYSED_PASSAGES)
def _analysed(text: str) -> tuple[tuple[str, ...], array[int]]:
    """The terms of `text` in order, and their (start, end) offsets, flattened."""
    spans = ANALYZER.spans(text)
    return tuple(term for _, _, term in spans), array("I", [x for start, end, _ in spans for x in (start, end)])


def highlight_spans(text: str, terms: Iterable[str]) -> list[tuple[int, int]]:
    """(start, end) offsets in `text` of every word whose stem is a query term, in order.

    Stop words never match, and stems match across forms ("energies" marks for "energy").
    """
    wanted = frozenset(terms)
    if not wanted:
        return []
    found, offsets = _analysed(text)
    return [(offsets[2 * n], offsets[2 * n + 1]) for n, term in enumerate(found) if term in wanted]
