"""Answer questions against a loaded index: dense, lexical or hybrid retrieval, filters, diversification,
highlights. Encoding is separate from ranking, so many queries share one model call."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from semsearch.errors import EmptyQueryError, InvalidSearchError
from semsearch.index.model.embedder import Embedder, model_info
from semsearch.index.reading.folding import normalize_query
from semsearch.index.storage.lexical import ANALYSIS_VERSION
from semsearch.index.storage.manifest import check_dimension, check_model
from semsearch.index.storage.store import StoredIndex, open_index
from semsearch.params import FUSION, MAX_OFFSET, MODE, OFFSET, PER_ARTICLE, RECENCY_HALF_LIFE, SORT, WEIGHT, K
from semsearch.params import MAX_K as MAX_K
from semsearch.search import recency
from semsearch.search.diversify import Pick, diversify
from semsearch.search.facets import Facets, count
from semsearch.search.filters import Filters
from semsearch.search.fusion import Candidates, best_first, fuse
from semsearch.search.highlight import highlight_spans, query_terms
from semsearch.search.paging import PAGE_BLOCK, ahead, blocks, candidate_depth, newest_first
from semsearch.search.pools import Pool, gather, parsed
from semsearch.search.related import RelatedArticle, related_articles
from semsearch.search.results import ArticleView, Hit
from semsearch.search.stages import StageClock, StageObserver
from semsearch.settings import BACKENDS, Settings

log = logging.getLogger("semsearch.search")
# The deepest candidates a request may need: hits up to MAX_OFFSET + MAX_K.
MAX_DEPTH = candidate_depth(MAX_OFFSET + MAX_K)
Vectors = npt.NDArray[np.float32]


def check_k(k: int) -> None:
    if not K.accepts(k):
        raise ValueError(f"k must be {K.allowed()}")


def clean_query(query: str) -> str:
    """The query as searched: control characters turned into spaces, NFKC-normalised (fullwidth `ｅｎｅｒｇｙ` is
    `energy`, as the BM25 analysis reads passages), trimmed."""
    cleaned = "".join(ch if ch.isprintable() or ch in "\t\n" else " " for ch in query)
    cleaned = " ".join(normalize_query(cleaned).split())
    if not cleaned:
        raise EmptyQueryError('The question is empty; ask something, e.g. `ask "energy cooperation in Central Asia"`')
    return cleaned


@dataclass(frozen=True)
class SearchOptions:
    """How to rank: defaults come from Settings; a request may change any of them. `offset` skips that many
    hits of the ranking (a later page); `sort` orders them by relevance or by date."""

    mode: str = MODE.default
    fusion: str = FUSION.default
    weight: float = WEIGHT.default
    per_article: int = PER_ARTICLE.default
    duplicate_threshold: float = 0.95
    filters: Filters = field(default_factory=Filters)
    offset: int = OFFSET.default
    sort: str = SORT.default
    recency_half_life: float | None = None
    now: float | None = None  # Unix seconds that ages count from (`recency.instant`); set with the half-life

    def __post_init__(self) -> None:
        for param in (MODE, FUSION, WEIGHT, PER_ARTICLE, OFFSET, SORT, RECENCY_HALF_LIFE):
            value = getattr(self, param.name)
            if value is not None and not param.accepts(value):
                raise ValueError(f"{param.name} must be {param.allowed()}")
        if self.recency_half_life is not None and self.now is None:
            raise ValueError("recency_half_life needs the moment ages count from (now)")

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchOptions:
        return cls(
            mode=settings.search_mode,
            fusion=settings.fusion,
            weight=settings.hybrid_weight,
            per_article=settings.per_article,
            duplicate_threshold=settings.duplicate_threshold,
        )

    def replace(self, **changes: Any) -> SearchOptions:
        """These options with the given fields changed; None means "keep"."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class IndexStats:
    articles: int
    passages: int
    model: dict[str, str | int | None]
    index_type: str
    vector_index: dict[str, Any]
    built_at: str
    index_bytes: int
    generation: str
    last_write: dict[str, int]
    segments: list[dict[str, Any]]
    last_merge: dict[str, Any]


@dataclass(frozen=True)
class EncodedBatch:
    """Requests checked and encoded, ready to rank: `results` holds each invalid request's error, `rows` maps a
    request to its row of `vectors`."""

    requests: Sequence[tuple[str, int, SearchOptions]]
    texts: list[str]
    results: list[list[Hit] | Exception]
    vectors: Vectors | None
    rows: dict[int, int]


class Searcher:
    """A loaded index and the model that built it, checked against each other at open."""

    def __init__(
        self,
        index: StoredIndex,
        embedder: Embedder,
        article_weight: float = 0.5,
        defaults: SearchOptions | None = None,
    ) -> None:
        check_dimension(index.manifest, embedder.dimension, index.root)
        self.index = index
        self.embedder = embedder
        self.article_weight = article_weight
        self.defaults = defaults or SearchOptions()
        self.observe: StageObserver | None = None  # told how long each search stage took (server metrics)

    @classmethod
    def open(cls, settings: Settings, embedder: Embedder | None = None, reuse: Searcher | None = None) -> Searcher:
        """Open the index at `settings.index` with the model and backend that built it; refuses another model
        before loading it. The segments `reuse` (a searcher of an earlier commit, still open) holds are shared,
        so only new segments are read."""
        index = open_index(
            settings.index, reuse=reuse.index if reuse is not None else None, threads=settings.search_threads
        )
        if index.manifest.settings.get("lexical_analysis") != ANALYSIS_VERSION:
            log.warning(
                "the index at %s was analysed for BM25 by an earlier version: some words (ß, final sigma, "
                "fullwidth forms) match differently until its next write or `semsearch index PATH --rebuild`",
                settings.index,
            )
        try:
            # Queries run on the backend that built the index, whatever SEMSEARCH_BACKEND says now.
            built = index.manifest.model.get("backend")
            if built in BACKENDS:
                settings = settings.replace(backend=built)
            if embedder is not None and embedder.info.backend != settings.backend:
                embedder = None
            info = embedder.info if embedder else model_info(settings)
            check_model(index.manifest, info, settings.index)
            loaded = embedder or Embedder.load(settings, info)
            return cls(index, loaded, settings.article_weight, SearchOptions.from_settings(settings))
        except BaseException:
            index.close()
            raise

    def search(self, query: str, k: int = 10, options: SearchOptions | None = None) -> list[Hit]:
        """The k best passages for `query`, best first."""
        return self.search_many([query], k, options)[0]

    def search_many(self, queries: Sequence[str], k: int = 10, options: SearchOptions | None = None) -> list[list[Hit]]:
        """`search` for many queries: one encoding batch and one vector-index call for all of them."""
        check_k(k)
        options = options or self.defaults
        found = self.search_batch([(q, k, options) for q in queries])
        failed = next((r for r in found if isinstance(r, Exception)), None)
        if failed is not None:
            raise failed
        return [r for r in found if not isinstance(r, Exception)]

    def search_batch(self, requests: Sequence[tuple[str, int, SearchOptions]]) -> list[list[Hit] | Exception]:
        """Many independent searches at once: one encoding call for every query that needs a vector, then one
        ranking call per group of equal (k, options). A request that is invalid gets its error, not the batch."""
        return self.rank_batch(self.encode_batch(requests))

    def encode_batch(self, requests: Sequence[tuple[str, int, SearchOptions]]) -> EncodedBatch:
        """The first half of `search_batch`: check and clean every request, and encode those that need a vector."""
        out: list[list[Hit] | Exception] = []
        texts: list[str] = []
        for query, k, _ in requests:
            try:
                check_k(k)
                text = clean_query(query)
                parsed(text)  # refuses a query with too many phrases and exclusions
                texts.append(text)
                out.append([])
            except (EmptyQueryError, InvalidSearchError, ValueError) as exc:
                texts.append("")
                out.append(exc)
        wanted = [
            n for n in range(len(requests)) if not isinstance(out[n], Exception) and requests[n][2].mode != "lexical"
        ]
        vectors = None
        if wanted:
            clock = StageClock(self.observe)
            with clock.stage("encode"):
                vectors = self.encode([parsed(texts[n]).text for n in wanted])
            clock.report()
        return EncodedBatch(requests, texts, out, vectors, {n: r for r, n in enumerate(wanted)})

    def rank_batch(self, batch: EncodedBatch) -> list[list[Hit] | Exception]:
        """The second half of `search_batch`: rank each group of equal (k, options) and build its hits."""
        out = list(batch.results)
        groups: dict[tuple[int, SearchOptions], list[int]] = {}
        for n, (_, k, options) in enumerate(batch.requests):
            if not isinstance(out[n], Exception):
                groups.setdefault((k, options), []).append(n)
        vectors = batch.vectors
        clock = StageClock(self.observe)
        for (k, options), members in groups.items():
            group_vectors = (
                None if vectors is None or options.mode == "lexical" else vectors[[batch.rows[n] for n in members]]
            )
            try:
                picks = self.retrieve(group_vectors, [batch.texts[n] for n in members], k, options, clock)
                with clock.stage("rank"):
                    for n, found in zip(members, picks, strict=True):
                        out[n] = self._hits(found, parsed(batch.texts[n]).text, first_rank=options.offset + 1)
            except Exception as exc:  # e.g. a bad filter: it fails its own group only
                for n in members:
                    out[n] = exc
        clock.report()
        return out

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Query vectors, one row per (cleaned) query."""
        if len(texts) == 1:
            return self.embedder.embed_query(texts[0])
        return self.embedder.embed_queries(texts)

    def retrieve(
        self,
        vectors: Vectors | None,
        texts: Sequence[str],
        k: int,
        options: SearchOptions | None = None,
        clock: StageClock | None = None,
        pools_out: list[Pool] | None = None,
    ) -> list[list[Pick]]:
        """Rank passages for queries whose vectors are ready (None in lexical mode): the ranking alone, hits
        `options.offset` + 1 to `options.offset` + k. `clock` adds the index lookups to its retrieve stage and
        fusion and diversification to its rank stage; `pools_out` receives each query's candidate pool.

        A query whose candidates give fewer than offset + k hits (the per-article cap, duplicates, phrases and
        filters thin them out) takes deeper candidates, block by block, while there are any, so a page is as
        full as the index allows and the pages of one query by relevance neither repeat nor skip a hit (by date,
        only within one block of 50: `sort=date` orders the candidates of the blocks that offset + k spans)."""
        options = options or self.defaults
        clock = clock or StageClock(None)
        if options.mode != "lexical" and vectors is None:
            raise ValueError(f"mode {options.mode!r} needs query vectors")
        queries = [parsed(text) for text in texts]
        with clock.stage("retrieve"):
            allowed = self._allowed(options)
        if allowed is not None and not allowed.any():
            if pools_out is not None:
                pools_out.extend(Pool(q, 0, None, Candidates.of([], [])) for q in queries)
            return [[] for _ in texts]
        wanted = options.offset + k
        with clock.stage("retrieve"):
            pools = gather(self.index, vectors, queries, candidate_depth(wanted), allowed, options.mode)
        results = []
        for n, pool in enumerate(pools):
            vector = None if vectors is None else vectors[n]
            with clock.stage("rank"):
                picks, done = self._paged(vector, pool, wanted, options)
            while len(picks) < wanted and options.sort != "date" and pool.full and pool.depth < MAX_DEPTH:
                with clock.stage("retrieve"):  # twice as deep; the blocks ranked so far stay as they are
                    rows = None if vector is None else vector[None, :]
                    deeper = min(2 * pool.depth, MAX_DEPTH)
                    (pool,) = gather(self.index, rows, [pool.query], deeper, allowed, options.mode)
                with clock.stage("rank"):
                    picks, done = self._paged(vector, pool, wanted, options, picks, done)
            if options.sort == "date":
                picks = self._newest_first(picks)
            if pools_out is not None:
                pools_out.append(pool)
            results.append(picks[options.offset : wanted])
        return results

    def _paged(
        self,
        vector: Vectors | None,
        pool: Pool,
        wanted: int,
        options: SearchOptions,
        shown: list[Pick] | None = None,
        done: int = 0,
    ) -> tuple[list[Pick], int]:
        """The first `wanted` picks (all kept candidates for `sort=date`), block by block, and the last block
        ranked: the hits of each block of 50 come from candidates as deep as that block needs, after the hits of
        the blocks before it, so a page further on neither repeats nor skips a hit of an earlier page. A pool
        deeper than `wanted` needs (taken because the first blocks fell short) adds its blocks, each continuing
        the one before, until `wanted` are found; `shown` and `done` resume after blocks already ranked."""
        shown = list(shown or [])
        last = max(blocks(wanted), pool.depth // (2 * PAGE_BLOCK))
        block = done
        for block in range(done + 1, last + 1):
            depth = candidate_depth(block * PAGE_BLOCK)
            if pool.dense is None or vector is None:
                scores = pool.lexical_top(depth)
            else:
                near = self._blend(vector, pool.dense_top(depth))
                scores = (
                    near
                    if options.mode == "dense"
                    else fuse(options.fusion, near, pool.lexical_top(depth), options.weight)
                )
            if options.recency_half_life is not None and options.now is not None:
                scores = self._boosted(scores, options.now, options.recency_half_life)
            ranked = ahead(shown, best_first(scores))
            # Each block keeps up to 50 more, and the last `wanted`, or every candidate when sorting by date.
            keep = min(block * PAGE_BLOCK, wanted)
            if block == last and options.sort == "date":
                keep = len(ranked)
            shown = diversify(
                ranked,
                self.index.article_id_of,
                self.index.vectors_of,
                keep,
                options.per_article,
                options.duplicate_threshold,
            )
            if len(shown) >= wanted and options.sort != "date":
                break
        return shown, block

    def _allowed(self, options: SearchOptions) -> npt.NDArray[np.bool_] | None:
        """The passages the filters let through, as a mask over passage ids (None: every passage)."""
        f = options.filters
        if f.empty:
            return None
        return self.index.matching_passages(f.date_from, f.date_to, f.source, f.article_id)

    def _boosted(self, scores: Candidates, now: float, half_life: float) -> Candidates:
        """`scores` with the recency boost: each scaled by its article's share (`recency.factors`)."""
        times = self.index.article_facts().times[self.index.passage_articles[scores.ids]]
        return Candidates.of(scores.ids, recency.boosted(scores.scores, recency.factors(times, now, half_life)))

    def search_counted(
        self, query: str, k: int, options: SearchOptions, fields: Sequence[str]
    ) -> tuple[list[Hit], Facets]:
        """`search`, and the facets of the same ranking: the articles of the candidate pool its hits came from,
        counted per `fields` (source, month)."""
        picks, pool, ranked = self._ranked_pool(query, k, options)
        return self._hits(picks, ranked, first_rank=options.offset + 1), self._count(pool, fields)

    def candidates(self, query: str, k: int = 10, options: SearchOptions | None = None) -> npt.NDArray[np.int64]:
        """The passage ids the ranking of this request drew its hits from, ascending: each retriever's
        candidates (as deep as the hits needed), after filters, phrases and exclusions."""
        return self._ranked_pool(query, k, options or self.defaults)[1].ids()

    def facets(self, query: str, fields: Sequence[str], k: int = 10, options: SearchOptions | None = None) -> Facets:
        """Counts per source and month (`fields`) of the articles of `candidates`, without building hits."""
        return self._count(self._ranked_pool(query, k, options or self.defaults)[1], fields)

    def _ranked_pool(self, query: str, k: int, options: SearchOptions) -> tuple[list[Pick], Pool, str]:
        """One query ranked: its picks, the candidate pool they came from, and the text that was ranked."""
        check_k(k)
        text = clean_query(query)
        ranked = parsed(text).text
        vectors = None if options.mode == "lexical" else self.encode([ranked])
        pools: list[Pool] = []
        (picks,) = self.retrieve(vectors, [text], k, options, pools_out=pools)
        return picks, pools[0], ranked

    def _count(self, pool: Pool, fields: Sequence[str]) -> Facets:
        ids = pool.ids()
        return count(self.index.passage_articles[ids].astype(np.int64), self.index.article_facts(), fields)

    def _newest_first(self, picks: list[Pick]) -> list[Pick]:
        rows = self.index.passages([p.passage_id for p in picks])
        return newest_first(picks, {n: rows[p.passage_id].date for n, p in enumerate(picks)})

    def _blend(self, vector: Vectors, near: Candidates) -> Candidates:
        """Passage similarity blended with its article's.

        An article's vector is the mean of its passages, so a passage from an article that is about
        the question as a whole outranks an equally close passage from an article that is not.
        """
        weight = self.article_weight
        if weight <= 0 or not len(near):
            return near
        article_scores = self.index.article_vectors[self.index.passage_articles[near.ids]] @ vector
        return Candidates.of(near.ids, (1 - weight) * near.scores.astype(np.float32) + weight * article_scores)

    def _hits(self, picks: list[Pick], query: str, first_rank: int = 1) -> list[Hit]:
        rows = self.index.passages([p.passage_id for p in picks])
        terms = query_terms(query)
        hits = []
        for rank, pick in enumerate(picks, start=first_rank):
            row = rows[pick.passage_id]
            hits.append(
                Hit(
                    rank,
                    pick.score,
                    pick.passage_id,
                    row.article_id,
                    row.title,
                    row.text,
                    row.date,
                    row.source,
                    row.url,
                    (row.start, row.end),
                    tuple(highlight_spans(row.text, terms)),
                    tuple(pick.duplicates),
                )
            )
        return hits

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
            vector_index=self.index.vector_info.to_dict(),
            built_at=m.built_at,
            index_bytes=self.index.disk_bytes(),
            generation=self.index.generation.name,
            last_write=dict(m.changes),
            segments=self.index.segment_stats(),
            last_merge=dict(m.last_merge),
        )

    def close(self) -> None:
        self.index.close()

    def related(self, article_id: str, k: int = 10, filters: Filters | None = None) -> list[RelatedArticle]:
        """The k articles closest to `article_id` as a whole, among those matching `filters`, best first: not
        the article itself nor its copies, near-identical ones folded together (`search.related`)."""
        check_k(k)
        return related_articles(self.index, article_id, k, filters or Filters(), self.defaults.duplicate_threshold)
