"""Candidate pools: each retriever's best passages for one query, taken as deep as its ranking needs, with the
phrases and exclusions of the query applied. Ranking (fusion, the article blend, the recency boost, duplicates
and the per-article cap) works on a pool's prefixes, so a pool must hold the same prefix at any depth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from semsearch.errors import InvalidSearchError
from semsearch.index.storage.lexical import ANALYZER
from semsearch.index.storage.store import StoredIndex
from semsearch.search.fusion import Candidates, best_first
from semsearch.search.paging import top
from semsearch.search.query_syntax import MAX_OPERATORS, ParsedQuery, parse

Vectors = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


def parsed(text: str) -> ParsedQuery:
    """The query language of a cleaned query; InvalidSearchError past MAX_OPERATORS phrases and exclusions (each
    is checked against every candidate)."""
    query = parse(text)
    operators = len(query.phrases) + len(query.excluded)
    if operators > MAX_OPERATORS:
        raise InvalidSearchError(
            f"the query has {operators} phrases and exclusions: give at most {MAX_OPERATORS} (a query without "
            "quotes or a leading minus has none)"
        )
    return query


@dataclass(frozen=True)
class Pool:
    """One query's candidates, best first, from the vector index (None in lexical mode) and from BM25 (empty in
    dense mode), each up to `depth`; `admitted` says, position by position, which of them the query's phrases
    and exclusions let through (None: all of them)."""

    query: ParsedQuery
    depth: int
    dense: Candidates | None
    lexical: Candidates
    dense_admitted: npt.NDArray[np.bool_] | None = None
    lexical_admitted: npt.NDArray[np.bool_] | None = None

    @property
    def full(self) -> bool:
        """Whether a retriever filled the depth, so that a deeper pool may hold more."""
        return len(self.lexical) >= self.depth or (self.dense is not None and len(self.dense) >= self.depth)

    def dense_top(self, depth: int) -> Candidates:
        assert self.dense is not None
        return _admitted_top(self.dense, self.dense_admitted, depth)

    def lexical_top(self, depth: int) -> Candidates:
        return _admitted_top(self.lexical, self.lexical_admitted, depth)

    def ids(self) -> npt.NDArray[np.int64]:
        """Every admitted candidate, ascending."""
        found = [self.lexical_top(self.depth).ids, np.zeros(0, dtype=np.int64)]
        if self.dense is not None:
            found.append(self.dense_top(self.depth).ids)
        return np.unique(np.concatenate(found)).astype(np.int64)


def _admitted_top(found: Candidates, admitted: npt.NDArray[np.bool_] | None, depth: int) -> Candidates:
    """The admitted ones among the first `depth`: the same prefix whatever depth the pool was taken at."""
    head = top(found, depth)
    if admitted is None:
        return head
    keep = admitted[: len(head)]
    return Candidates(head.ids[keep], head.scores[keep])


def gather(
    index: StoredIndex,
    vectors: Vectors | None,
    queries: Sequence[ParsedQuery],
    depth: int,
    allowed: Mask | None,
    mode: str,
) -> list[Pool]:
    """A pool per query. Queries without phrases or exclusions share one vector-index call; one with them
    searches only the passages holding every term of its phrases and none of its excluded terms, then checks
    each candidate's text (`ParsedQuery.admits`)."""
    masks = [constrained(index, allowed, q) for q in queries]
    dense: list[Candidates | None] = [None] * len(queries)
    if mode != "lexical" and vectors is not None:
        plain = [n for n, q in enumerate(queries) if not q.has_operators]
        if plain:
            for n, found in zip(plain, nearest(index, vectors[plain], depth, allowed), strict=True):
                dense[n] = found
        for n, query in enumerate(queries):
            if query.has_operators:
                dense[n] = nearest(index, vectors[[n]], depth, masks[n])[0]
    pools = []
    for n, query in enumerate(queries):
        lexical = Candidates.of([], [])
        if mode != "dense":
            scores, ids = index.lexical_search(ANALYZER.terms(query.text), depth, masks[n])
            lexical = best_first(Candidates.of(ids, scores))
        near = dense[n]
        checked = query.has_operators
        pools.append(
            Pool(
                query,
                depth,
                near,
                lexical,
                admission(index, near, query) if checked and near is not None else None,
                admission(index, lexical, query) if checked else None,
            )
        )
    return pools


def nearest(index: StoredIndex, vectors: Vectors, depth: int, allowed: Mask | None) -> list[Candidates]:
    """Per query row, the nearest passages by their own similarity, best first."""
    all_scores, all_ids = index.search(vectors, depth, allowed)
    found = []
    for scores, ids in zip(all_scores, all_ids, strict=True):
        keep = ids >= 0
        found.append(best_first(Candidates.of(ids[keep], scores[keep])))
    return found


def constrained(index: StoredIndex, allowed: Mask | None, query: ParsedQuery) -> Mask | None:
    """`allowed` narrowed to the passages whose BM25 terms can satisfy the query's phrases and exclusions."""
    if not query.has_operators:
        return allowed
    mask = index.passages_with(query.required_terms(ANALYZER))
    excluded = query.excluded_terms(ANALYZER)
    if excluded:
        mask &= index.passages_without(excluded)
    return mask if allowed is None else mask & allowed


def admission(index: StoredIndex, found: Candidates, query: ParsedQuery) -> npt.NDArray[np.bool_]:
    """Position by position, whether the candidate's text (or title, when BM25 read titles) holds every phrase
    and no excluded word."""
    if not len(found):
        return np.zeros(0, dtype=np.bool_)
    rows = index.passages(found.ids.tolist())
    titled = index.manifest.settings.get("lexical_title", True)
    return np.array(
        [query.admits(rows[i].text, rows[i].title if titled else None) for i in found.ids.tolist()], dtype=np.bool_
    )
