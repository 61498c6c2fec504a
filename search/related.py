"""Related stories: the articles closest to one article as a whole, by the cosine of their article vectors (each
the normalised mean of its passage vectors). `related_rows` is pure over arrays; `related_articles` reads them,
and the articles' fields, from a loaded index."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from semsearch.errors import ArticleNotFoundError
from semsearch.index.reading.articles import text_problem
from semsearch.index.storage.store import StoredIndex
from semsearch.search.filters import Filters


@dataclass(frozen=True)
class RelatedPick:
    """A kept article (its row in the index) and the rows of the near-identical articles folded into it."""

    row: int
    score: float
    duplicates: tuple[int, ...] = ()


@dataclass(frozen=True)
class RelatedArticle:
    """One related story: an article close to the one asked about; `score` is the cosine of their article
    vectors, and `duplicates` lists other articles near-identical to this one, folded into it."""

    rank: int
    score: float
    article_id: str
    title: str
    date: str | None
    source: str | None
    url: str | None
    duplicates: tuple[str, ...] = ()


def related_rows(
    vectors: npt.NDArray[np.float32],
    source: int,
    allowed: npt.NDArray[np.bool_],
    k: int,
    duplicate_threshold: float,
) -> list[RelatedPick]:
    """The k rows of `vectors` (unit rows) closest to row `source` among the `allowed` ones, best first (ties by
    row).

    The source is never among them, nor any row whose cosine to it is at least `duplicate_threshold`: that is the
    same story copied. A row as close to a kept one folds into it (listed in its `duplicates`), also when it ranks
    below the k-th (down to position 2k), as passages fold in search; a threshold above 1 turns folding off.
    """
    scores = vectors @ vectors[source]
    candidates = allowed.copy()
    candidates[source] = False
    collapse = duplicate_threshold <= 1.0
    if collapse:
        candidates &= scores < duplicate_threshold
    horizon = 2 * k if collapse else k
    kept = np.zeros((k, vectors.shape[1]), dtype=np.float32)
    picks: list[tuple[int, list[int]]] = []
    # Rows within `horizon` are always read; past it, only while fewer than k are kept (the rest folded in).
    for n, row in enumerate(_best_first(np.flatnonzero(candidates), scores, horizon + k)):
        near = np.flatnonzero(kept[: len(picks)] @ vectors[row] >= duplicate_threshold) if collapse else None
        if near is not None and len(near):
            picks[int(near[0])][1].append(row)
        elif len(picks) < k:
            kept[len(picks)] = vectors[row]
            picks.append((row, []))
        if len(picks) == k and n + 1 >= horizon:
            break
    return [RelatedPick(row, float(scores[row]), tuple(folded)) for row, folded in picks]


def _best_first(rows: npt.NDArray[np.intp], scores: npt.NDArray[np.float32], head: int) -> Iterator[int]:
    """`rows` by score, best first, ties by row. The best `head` (with any tied to the last of them) come from a
    partition, and only a caller that reads past them pays for sorting the rest."""
    values = scores[rows]
    if 0 < head < len(rows):
        cut = values[np.argpartition(-values, head - 1)[head - 1]]  # the head-th best score
        best = values >= cut
        top = rows[best]
        yield from top[np.lexsort((top, -values[best]))].tolist()
        rows, values = rows[~best], values[~best]
    yield from rows[np.lexsort((rows, -values))].tolist()


def related_articles(
    index: StoredIndex, article_id: str, k: int, filters: Filters, duplicate_threshold: float
) -> list[RelatedArticle]:
    """The k articles of `index` closest to `article_id` as a whole, among those matching `filters`, best first
    (`related_rows`), with their fields; ArticleNotFoundError for an id the index does not hold."""
    own = np.zeros(0, dtype=np.int32)
    if text_problem(article_id) is None:  # an id that is not Unicode text names no article
        own = index.passage_articles[index.matching_passages(article_id=article_id)]
    if not len(own):
        raise ArticleNotFoundError(f"No article with id {article_id!r} in the index")
    f = filters
    passages = None if f.empty else index.matching_passages(f.date_from, f.date_to, f.source)
    owners = index.passage_articles if passages is None else index.passage_articles[passages]
    allowed = np.zeros(len(index.article_ids), dtype=np.bool_)
    allowed[owners[owners >= 0]] = True
    picks = related_rows(index.article_vectors, int(own[0]), allowed, k, duplicate_threshold)
    return _with_fields(index, picks)


def _with_fields(index: StoredIndex, picks: list[RelatedPick]) -> list[RelatedArticle]:
    """The picks with their articles' fields, read through each article's first passage."""
    first = index.article_facts().first_passage
    passage_of = {p.row: int(first[p.row]) for p in picks}
    found = index.passages([passage_of[p.row] for p in picks])
    out = []
    for rank, pick in enumerate(picks, start=1):
        row = found[passage_of[pick.row]]
        folded = tuple(index.article_ids[r] for r in pick.duplicates)
        out.append(RelatedArticle(rank, pick.score, row.article_id, row.title, row.date, row.source, row.url, folded))
    return out
