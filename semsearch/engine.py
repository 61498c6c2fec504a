"""The engine as one object, for code that embeds it: open an index, search it, add and delete articles.

A thin façade over `semsearch.search` (a live searcher that follows the index on disk) and the write path of
`semsearch.index`; it raises the same `SemsearchError` subclasses as the CLI and the HTTP API.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from semsearch.errors import ArticleNotFoundError, InvalidArticleError, InvalidSearchError, NoIndexError
from semsearch.index.model.embedder import Embedder
from semsearch.index.reading.articles import Article
from semsearch.index.reading.readers import article_from_record
from semsearch.index.writing.builder import BuildSummary, delete_articles, write_articles
from semsearch.index.writing.merging import MergeReport, optimize
from semsearch.params import FACETS_PATTERN
from semsearch.search.facets import Facets, parse_fields
from semsearch.search.filters import Filters
from semsearch.search.live import LiveSearcher
from semsearch.search.options import request_options
from semsearch.search.related import RelatedArticle
from semsearch.search.results import ArticleView, Hit
from semsearch.search.searcher import check_k
from semsearch.settings import Settings


class Engine:
    """An index and the model that reads it, loaded once. Not for several processes at once: writes take the
    index's writer lock, so a second writer (another Engine, the CLI, a server) gets `IndexBusyError`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._live = LiveSearcher(settings)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, settings: Settings | None = None) -> Engine:
        """The engine on the index at `path` (default: `settings.index`; settings default to the SEMSEARCH_*
        environment). A folder with no index yet is fine: the first `add` creates it."""
        settings = settings or Settings.from_env(os.environ)
        if path is not None:
            settings = settings.replace(index=Path(path).expanduser())
        engine = cls(settings)
        engine._refresh(missing_ok=True)
        return engine

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        offset: int = 0,
        sort: str = "relevance",
        recency_half_life: float | None = None,
        now: str | None = None,
        mode: str | None = None,
        fusion: str | None = None,
        weight: float | None = None,
        per_article: int | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        source: str | None = None,
        article_id: str | None = None,
    ) -> list[Hit]:
        """The `k` best passages for `query` after the first `offset` (ranks count from offset + 1), by relevance
        or, with `sort="date"`, newest first; `recency_half_life` (days) boosts recent articles, their age
        counted from `now` (ISO 8601; default: the current time). Options left as None take the index's defaults
        (Settings)."""
        _check_k(k)
        self._refresh()
        with self._live.use() as searcher:
            options = request_options(
                searcher.defaults,
                offset=offset,
                sort=sort,
                recency_half_life=recency_half_life,
                now=now,
                mode=mode,
                fusion=fusion,
                weight=weight,
                per_article=per_article,
                date_from=date_from,
                date_to=date_to,
                source=source,
                article_id=article_id,
            )
            return searcher.search(query, k, options)

    def facets(
        self,
        query: str,
        fields: str = "source,month",
        k: int = 10,
        *,
        offset: int = 0,
        recency_half_life: float | None = None,
        now: str | None = None,
        mode: str | None = None,
        fusion: str | None = None,
        weight: float | None = None,
        per_article: int | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        source: str | None = None,
        article_id: str | None = None,
    ) -> Facets:
        """How many of the articles matching `query` each source and month holds (`fields`: `source`, `month` or
        both): the articles of the candidates that `search` with the same arguments ranks its hits from, as
        HTTP's `facets=` counts them."""
        if not isinstance(fields, str) or not re.fullmatch(FACETS_PATTERN, fields):
            raise InvalidSearchError(f"fields={fields!r}: use source, month or source,month")
        _check_k(k)
        self._refresh()
        with self._live.use() as searcher:
            options = request_options(
                searcher.defaults,
                offset=offset,
                recency_half_life=recency_half_life,
                now=now,
                mode=mode,
                fusion=fusion,
                weight=weight,
                per_article=per_article,
                date_from=date_from,
                date_to=date_to,
                source=source,
                article_id=article_id,
            )
            return searcher.facets(query, parse_fields(fields), k, options)

    def add(self, articles: Iterable[Article | Mapping[str, Any]]) -> BuildSummary:
        """Add or replace articles: `Article`s, or records like a .jsonl line (`id`, `title`, `body` or `text`,
        `date`, `source`, `url`, ...). Only new passage text is embedded; the write is one new segment, and the
        merges the policy asks for run after it."""
        batch = [_article(item, n) for n, item in enumerate(articles)]
        if not batch:
            raise InvalidArticleError("Give at least one article to add")
        return self._written(write_articles(self.settings, batch, embedder=self._live.embedder))

    def delete(self, ids: Sequence[str]) -> BuildSummary:
        """Remove these articles (all must be in the index, or nothing is removed)."""
        if isinstance(ids, str):
            ids = [ids]
        return self._written(delete_articles(self.settings, list(ids), embedder=self._live.embedder))

    def optimize(self) -> list[MergeReport]:
        """Merge the index into one segment without deleted passages (`semsearch optimize`); searches go on."""
        reports = optimize(self.settings)
        self._refresh()
        return reports

    def article(self, article_id: str) -> ArticleView:
        """An indexed article with its passages' ids and offsets."""
        self._refresh()
        with self._live.use() as searcher:
            found = searcher.article(article_id)
        if found is None:
            raise ArticleNotFoundError(f"No article {article_id!r} in the index at {self.settings.index}")
        return found

    def related(
        self,
        article_id: str,
        k: int = 10,
        *,
        date_from: str | None = None,
        date_to: str | None = None,
        source: str | None = None,
    ) -> list[RelatedArticle]:
        """The `k` articles closest to `article_id` as a whole (cosine of their mean passage vectors), best first,
        among those matching the filters: never the article itself or a copy of it, near-identical ones folded."""
        try:
            check_k(k)
        except ValueError as exc:
            raise InvalidSearchError(f"{exc} (got k={k})") from None
        filters = Filters.parse(date_from, date_to, source)
        self._refresh()
        with self._live.use() as searcher:
            return searcher.related(article_id, k, filters)

    def close(self) -> None:
        self._live.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder | None:
        return self._live.embedder

    def _refresh(self, missing_ok: bool = False) -> None:
        """Follow the index on disk: a write by anyone (this engine, the CLI, a server) is seen here."""
        try:
            self._live.refresh()
        except NoIndexError:
            if not missing_ok:
                raise

    def _written(self, summary: BuildSummary) -> BuildSummary:
        self._refresh()
        return summary


def _article(item: Article | Mapping[str, Any], position: int) -> Article:
    if isinstance(item, Article):
        return item
    if not isinstance(item, Mapping):
        raise InvalidArticleError(f"Article {position}: give an Article or a mapping, not {type(item).__name__}")
    try:
        return article_from_record(item, fallback_id="", where=f"article {position}")
    except ValueError as exc:
        raise InvalidArticleError(f"Article {position}: {exc}") from None


def _check_k(k: int) -> None:
    try:
        check_k(k)
    except ValueError as exc:
        raise InvalidSearchError(f"{exc} (got k={k})") from None
