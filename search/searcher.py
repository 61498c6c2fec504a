"""Answer questions against a loaded index: encode the query, search FAISS, attach metadata."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from index.embedder import Embedder, model_info
from index.errors import EmptyQueryError
from index.manifest import check_dimension, check_model
from index.settings import Settings
from index.store import StoredIndex, open_index
from search.results import ArticleView, Hit

MAX_K = 100
# Passages fetched from the vector index before article context re-orders them.
MIN_CANDIDATES = 64


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}")


def clean_query(query: str) -> str:
    """The query as searched: trimmed, with control characters turned into spaces."""
    cleaned = "".join(ch if ch.isprintable() or ch in "\t\n" else " " for ch in query)
    cleaned = " ".join(cleaned.split())
    if not cleaned:
        raise EmptyQueryError('The question is empty; ask something, e.g. `ask "energy cooperation in Central Asia"`')
    return cleaned


@dataclass(frozen=True)
class IndexStats:
    articles: int
    passages: int
    model: dict[str, str]
    index_type: str
    built_at: str
    index_bytes: int
    generation: str


class Searcher:
    """A loaded index and the model that built it, checked against each other at open."""

    def __init__(self, index: StoredIndex, embedder: Embedder, article_weight: float = 0.5) -> None:
        check_dimension(index.manifest, embedder.dimension, index.root)
        self.index = index
        self.embedder = embedder
        self.article_weight = article_weight

    @classmethod
    def open(cls, settings: Settings, embedder: Embedder | None = None) -> Searcher:
        """Open the index at `settings.index`; refuses a model mismatch before loading the model."""
        index = open_index(settings.index)
        try:
            info = embedder.info if embedder else model_info(settings)
            check_model(index.manifest, info, settings.index)
            return cls(index, embedder or Embedder.load(settings, info), settings.article_weight)
        except BaseException:
            index.close()
            raise

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The k passages closest to `query`, best first."""
        _check_k(k)
        vector = self.embedder.embed_query(clean_query(query))
        return self._hits(self.rank(vector, k)[0])

    def search_many(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """`search` for many queries: one encoding batch and one vector-index call for all of them."""
        _check_k(k)
        if not queries:
            return []
        vectors = self.embedder.embed_queries([clean_query(q) for q in queries])
        return [self._hits(found) for found in self.rank(vectors, k)]

    def _hits(self, found: list[tuple[float, int]]) -> list[Hit]:
        rows = self.index.passages([i for _, i in found])
        hits = []
        for rank, (score, pid) in enumerate(found, start=1):
            row = rows[pid]
            hits.append(
                Hit(
                    rank,
                    score,
                    pid,
                    row.article_id,
                    row.title,
                    row.text,
                    row.date,
                    row.source,
                    row.url,
                    (row.start, row.end),
                )
            )
        return hits

    def rank(self, vectors: npt.NDArray[np.float32], k: int) -> list[list[tuple[float, int]]]:
        """Per query row, (score, passage id) best first: passage similarity blended with its article's.

        An article's vector is the mean of its passages, so a passage from an article that is about
        the question as a whole outranks an equally close passage from an article that is not.
        """
        weight = self.article_weight
        depth = k if weight == 0 else max(MIN_CANDIDATES, 4 * k)
        all_scores, all_ids = self.index.search(vectors, depth)
        ranked = []
        for vector, scores, ids in zip(vectors, all_scores, all_ids, strict=True):
            keep = ids >= 0
            passage_scores, passage_ids = scores[keep], ids[keep]
            if weight > 0:
                owners = self.index.passage_articles[passage_ids]
                article_scores = self.index.article_vectors[owners] @ vector
                passage_scores = (1 - weight) * passage_scores + weight * article_scores
            order = np.argsort(-passage_scores, kind="stable")[:k]
            ranked.append([(float(passage_scores[i]), int(passage_ids[i])) for i in order])
        return ranked

    def article(self, article_id: str) -> ArticleView | None:
        found = self.index.article(article_id)
        if found is None:
            return None
        record, passages = found
        fields: dict[str, Any] = {
            k: record[k] for k in ("id", "title", "body", "date", "source", "url", "author", "metadata")
        }
        return ArticleView(**fields, passages=[(p.passage_id, (p.start, p.end)) for p in passages])

    def stats(self) -> IndexStats:
        m = self.index.manifest
        return IndexStats(
            articles=m.counts["articles"],
            passages=m.counts["passages"],
            model=m.model,
            index_type=m.index_type,
            built_at=m.built_at,
            index_bytes=self.index.disk_bytes(),
            generation=self.index.generation.name,
        )

    def close(self) -> None:
        self.index.close()
