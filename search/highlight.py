"""Where a query's terms occur in a passage: character spans, found by the same analyzer as BM25."""

from __future__ import annotations

from collections.abc import Iterable

from index.lexical import ANALYZER


def query_terms(query: str) -> frozenset[str]:
    return frozenset(ANALYZER.terms(query))


def highlight_spans(text: str, terms: Iterable[str]) -> list[tuple[int, int]]:
    """(start, end) offsets in `text` of every word whose stem is a query term, in order.

    Stop words never match, and stems match across forms ("energies" marks for "energy").
    """
    wanted = frozenset(terms)
    if not wanted:
        return []
    return ANALYZER.matches(text, wanted)
