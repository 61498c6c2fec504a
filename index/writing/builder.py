"""Write an index: read articles, split them into passages, embed what is new, and commit a segment.

Every write (a first build, an update, a delete) looks up in the current commit the articles it names, works
out what changed, reuses the vector of every passage whose embedded text any segment holds, writes one new
segment with the articles it adds or replaces, and commits it with tombstones for the articles it replaces or
removes; a failure at any point leaves the previous commit current and whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from semsearch.errors import (
    ArticleTooLargeError,
    CorruptIndexError,
    EmptyCorpusError,
    IndexMismatchError,
    InvalidArticleError,
    NoIndexError,
    SemsearchError,
)
from semsearch.index.model.embedder import Embedder, ModelInfo, model_info, resolve_backend
from semsearch.index.reading.articles import Article, Passage, ReadReport, Skipped, article_problem, text_hash
from semsearch.index.reading.folding import normalize_id
from semsearch.index.reading.readers import display_path, read_corpus
from semsearch.index.reading.splitter import split_passages
from semsearch.index.storage.commit_view import CommitView, StoredArticle
from semsearch.index.storage.generations import write_generation, writer_lock
from semsearch.index.storage.lexical import ANALYSIS_VERSION, ANALYZER
from semsearch.index.storage.manifest import FORMAT_VERSION, Manifest, library_versions
from semsearch.index.storage.postings import Postings
from semsearch.index.storage.segment import Written, write_segment
from semsearch.index.storage.vectors import VectorIndexInfo, segment_threshold
from semsearch.index.writing.changes import Plan, assign_ids, plan_changes
from semsearch.index.writing.merging import MergeReport, merge_pending
from semsearch.settings import Settings

# Given the number of passages to embed, returns the callback that reports each embedded chunk.
ProgressFactory = Callable[[int], Callable[[int], None]]
_MIN_TITLE_BUDGET = 64
# Settings an index is built with; an update under other values would mix two kinds of passages.
BUILD_SETTINGS = ("embed_title", "lexical_title", "min_passage_chars")


@dataclass
class BuildSummary:
    """What one write did. `generation` is None when nothing changed and nothing was written."""

    index: Path
    generation: str | None
    articles: int
    passages: int
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0
    vector_index: VectorIndexInfo | None = None
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    merges: list[MergeReport] = field(default_factory=list)

    @property
    def passages_per_second(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0


def passage_text_for_embedding(article: Article, passage: Passage, embed_title: bool) -> str:
    """What the model sees for a passage: the paragraph, or the title and the paragraph."""
    if embed_title and article.title:
        return f"{article.title}\n{passage.text}"
    return passage.text


def lexical_text(article: Article, passage: Passage, with_title: bool) -> str:
    """What BM25 indexes for a passage: the paragraph, or the title and the paragraph."""
    if with_title and article.title:
        return f"{article.title}\n{passage.text}"
    return passage.text


def split_article(article: Article, embedder: Embedder, settings: Settings) -> list[Passage]:
    budget = embedder.max_tokens
    if settings.embed_title and article.title:
        budget = max(_MIN_TITLE_BUDGET, budget - embedder.count_tokens(article.title) - 1)
    spans = split_passages(article.body, embedder.count_tokens, budget, settings.min_passage_chars)
    return [Passage(article.id, n, s, e, article.body[s:e]) for n, (s, e) in enumerate(spans)]


def size_problem(article: Article, limit: int) -> str | None:
    """Why `article` is too large to index (more than `limit` characters of title and body), or None. Every step
    of a write is linear in the text, so this bounds how long one article holds the writer lock."""
    size = len(article.title) + len(article.body)
    if size <= limit:
        return None
    return f"{size:,} characters of title and body, over the limit of {limit:,} (SEMSEARCH_MAX_ARTICLE_CHARS)"


def _within_size(articles: Iterable[Article], settings: Settings, report: ReadReport) -> Iterator[Article]:
    for article in articles:
        problem = size_problem(article, settings.max_article_chars)
        if problem:
            report.skip(article.path or article.id, f"the article is too large: {problem}")
        else:
            yield article


def build_index(
    paths: Sequence[Path],
    settings: Settings,
    embedder: Embedder | None = None,
    progress: ProgressFactory | None = None,
    prune: bool = False,
    rebuild: bool = False,
) -> BuildSummary:
    """Index every article under `paths` into `settings.index`.

    On an existing index this adds new articles and replaces changed ones; `prune` also removes the
    articles not found under `paths`, and `rebuild` starts from an empty index. Nothing is written when
    the corpus holds no usable article.
    """
    report = ReadReport()
    articles = _unique(_within_size(read_corpus(paths, settings.ignore, report), settings, report), report)
    if not articles:
        reasons = "; ".join(f"{s.where}: {s.reason}" for s in report.skipped[:5])
        raise EmptyCorpusError(
            f"No article to index under {', '.join(map(display_path, paths))}"
            + (f" (skipped: {reasons})" if reasons else "")
            + "; give .txt, .md, .jsonl, .json, .csv or .html files with text. No index was written."
        )
    summary = write_articles(settings, articles, prune=prune, rebuild=rebuild, embedder=embedder, progress=progress)
    summary.skipped, summary.warnings = report.skipped, report.warnings + summary.warnings
    return summary


def delete_articles(
    settings: Settings, ids: Sequence[str], embedder: Embedder | None = None, merge: bool = True
) -> BuildSummary:
    """Remove these articles (all must be in the index) in one commit."""
    if not ids:
        raise InvalidArticleError("Give at least one article id to delete")
    return write_articles(settings, [], deletes=ids, embedder=embedder, merge=merge)


def write_articles(
    settings: Settings,
    upserts: Sequence[Article],
    deletes: Sequence[str] = (),
    prune: bool = False,
    rebuild: bool = False,
    embedder: Embedder | None = None,
    progress: ProgressFactory | None = None,
    merge: bool = True,
) -> BuildSummary:
    """Add or replace `upserts` and remove `deletes` in one commit, under the writer lock: one new segment with
    the articles written, tombstones for those replaced or removed. With `merge`, the merges the policy asks for
    then run in this call (each holding the lock only to commit); a server merges in the background instead.

    Ids are NFC-normalised (see `articles`); a delete names a stored id as given or in that form."""
    started = time.perf_counter()
    for article in upserts:
        too_large = size_problem(article, settings.max_article_chars)
        if too_large:
            where = f" ({article.path})" if article.path else ""
            raise ArticleTooLargeError(
                f"The article {article.id[:80]!r}{where} is too large: {too_large}; split it into several articles"
            )
        problem = article_problem(article)
        if problem:
            raise InvalidArticleError(f"The article {article.id[:80]!r} cannot be written: {problem}")
    upserts = [a if a.id == normalize_id(a.id) else replace(a, id=normalize_id(a.id)) for a in upserts]
    info, fallback = (embedder.info, None) if embedder else resolve_backend(settings, model_info(settings))
    with writer_lock(settings.index):
        view = _previous(settings, info, rebuild)
        try:
            summary = _write(settings, info, upserts, deletes, prune, rebuild, view, embedder, progress, started)
        finally:
            if view is not None:
                view.close()
    summary.warnings += [fallback] if fallback else []
    if merge and settings.merge and summary.generation is not None:
        try:
            summary.merges = merge_pending(settings)
        except SemsearchError as exc:
            # The write is committed: its merge is left for a later write (or `semsearch optimize`), not its failure.
            summary.warnings.append(f"The write is committed; merging segments after it failed, left for later: {exc}")
    return summary


def _previous(settings: Settings, info: ModelInfo, rebuild: bool) -> CommitView | None:
    """The current commit to update from, or None for a first build (or a rebuild of a bad one)."""
    try:
        previous = CommitView.open(settings.index)
    except NoIndexError:
        return None
    except (CorruptIndexError, IndexMismatchError) as exc:
        if rebuild:
            return None
        raise type(exc)(f"{exc} To replace it, run `semsearch index PATH --rebuild`.") from None
    built = previous.manifest
    # Vectors from another export recipe would be mixed with new ones under the new one's label.
    same_model = (built.model.get("fingerprint"), built.model.get("backend"), built.model.get("export_revision")) == (
        info.fingerprint,
        info.backend,
        info.export_revision,
    )
    same_settings = all(built.settings.get(name) == getattr(settings, name) for name in BUILD_SETTINGS)
    if same_model and (same_settings or rebuild):
        return previous
    previous.close()
    if rebuild:
        return None
    raise IndexMismatchError(
        f"The index at {settings.index} was built with model {built.model.get('name')} "
        f"({built.model.get('backend')}, export revision {built.model.get('export_revision')}) and settings "
        f"{built.settings}; the configured ones differ ({info.backend}, export revision {info.export_revision}), "
        "so new passages would not be comparable with the stored ones. Run `semsearch index PATH --rebuild`."
    )


def _write(
    settings: Settings,
    info: ModelInfo,
    upserts: Sequence[Article],
    deletes: Sequence[str],
    prune: bool,
    rebuild: bool,
    view: CommitView | None,
    embedder: Embedder | None,
    progress: ProgressFactory | None,
    started: float,
) -> BuildSummary:
    """Plan the write, split and embed what is new, write its segment and commit it with its tombstones."""
    if view is None or rebuild:
        stored: dict[str, StoredArticle] = {}
    else:
        named = view.live_ids() if prune else [*(a.id for a in upserts), *deletes]
        stored = view.find([*named, *(normalize_id(d) for d in deletes)])
    deletes = [d if d in stored else normalize_id(d) for d in deletes]
    plan = plan_changes({i: place.content_hash for i, place in stored.items()}, upserts, deletes, prune)
    if rebuild:
        plan = Plan(articles=plan.articles, added=[a.id for a in plan.articles])
    counts = view.manifest.counts if view is not None and not rebuild else {"articles": 0, "passages": 0}
    if view is not None and not rebuild and not plan.changes_anything:
        return BuildSummary(
            index=settings.index,
            generation=None,
            articles=counts["articles"],
            passages=counts["passages"],
            unchanged=len(plan.unchanged),
            vector_index=VectorIndexInfo.from_dict(view.manifest.vector_index),
            seconds=time.perf_counter() - started,
        )
    replaced = [stored[i] for i in plan.replaced]
    articles_after = counts["articles"] - len(replaced) + len(plan.articles)
    if articles_after == 0:
        raise InvalidArticleError(
            f"This write would leave the index at {settings.index} empty; delete the folder instead if that is meant"
        )
    model = embedder
    fresh: list[tuple[str, list[tuple[Passage, str]]]] = []
    for article in plan.articles:
        model = model or Embedder.load(settings, info)
        fresh.append(
            (
                article.id,
                [
                    (p, text_hash(passage_text_for_embedding(article, p, settings.embed_title)))
                    for p in split_article(article, model, settings)
                ],
            )
        )
    old = {i: view.passages_of(stored[i], i) for i in plan.updated} if view is not None else {}
    next_id = view.manifest.next_passage_id if view is not None and not rebuild else 0
    passages, next_id = assign_ids(fresh, old, next_id)
    donors = view.vectors_by_hash({p.embed_hash for p in passages}) if view is not None else {}
    by_article = {a.id: a for a in plan.articles}
    texts: dict[str, str] = {}
    for item in passages:
        if item.embed_hash not in donors and item.embed_hash not in texts:
            article = by_article[item.passage.article_id]
            texts[item.embed_hash] = passage_text_for_embedding(article, item.passage, settings.embed_title)
    embed_started = time.perf_counter()
    if texts:
        model = model or Embedder.load(settings, info)
        embedded = model.embed_documents(
            list(texts.values()), settings.batch_size, progress(len(texts)) if progress else None
        )
        donors.update(zip(texts, embedded, strict=True))
    embed_seconds = time.perf_counter() - embed_started
    dimension = model.dimension if model else view.manifest.dimension if view is not None else 0
    vectors = np.zeros((len(passages), dimension), dtype=np.float32)
    for n, item in enumerate(passages):
        vectors[n] = donors[item.embed_hash]
    changes = {
        "added": len(plan.added),
        "updated": len(plan.updated),
        "removed": len(plan.removed),
        "unchanged": len(plan.unchanged),
        "embedded": len(texts),
        "reused": len(passages) - len(texts),
    }
    refs = list(view.refs) if view is not None and not rebuild else []
    for place in replaced:
        refs[place.segment] = refs[place.segment].with_deleted([place.row], place.passages)
    passages_after = counts["passages"] - sum(p.passages for p in replaced) + len(passages)
    written: Written | None = None
    if plan.articles:
        postings = Postings.build(
            [
                ANALYZER.terms(lexical_text(by_article[s.passage.article_id], s.passage, settings.lexical_title))
                for s in passages
            ]
        )
        threshold = segment_threshold(settings.ann_threshold, passages_after)
        written = write_segment(settings.index, plan.articles, passages, vectors, postings, threshold, settings.threads)
        refs.append(written.ref())
    try:
        refs = [r for r in refs if not r.fully_deleted]
        largest = max(refs, key=lambda r: r.passages)
        vector_info = VectorIndexInfo.from_dict(largest.vector_index)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            model={**asdict(info), "plan": _embedding_plan(model if texts else None, view)},
            dimension=dimension,
            max_tokens=model.max_tokens if model else view.manifest.max_tokens if view is not None else 0,
            metric="inner_product",
            index_type=vector_info.type,
            counts={"articles": articles_after, "passages": passages_after},
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
            build_seconds=round(time.perf_counter() - started, 3),
            settings={
                **{name: getattr(settings, name) for name in BUILD_SETTINGS},
                "lexical_analysis": ANALYSIS_VERSION,
            },
            versions=library_versions(),
            vector_index=vector_info.to_dict(),
            next_passage_id=next_id,
            changes=changes,
            segments=[r.to_dict() for r in refs],
            last_merge=dict(view.manifest.last_merge) if view is not None else {},
        )
        if view is not None:
            view.close()  # its segments may be dropped by this commit: clean-up must find them unheld
        generation = write_generation(settings.index, manifest)
    finally:
        if written is not None:
            written.release()
    return BuildSummary(
        index=settings.index,
        generation=generation.name,
        articles=articles_after,
        passages=manifest.counts["passages"],
        added=changes["added"],
        updated=changes["updated"],
        removed=changes["removed"],
        unchanged=changes["unchanged"],
        embedded=changes["embedded"],
        reused=changes["reused"],
        vector_index=VectorIndexInfo.from_dict(written.info.vector_index) if written is not None else vector_info,
        seconds=time.perf_counter() - started,
        embed_seconds=embed_seconds,
    )


def _embedding_plan(model: Embedder | None, previous: CommitView | None) -> str | None:
    """The plan that embedded this write's passages (a write that embedded none keeps the one before): how
    the backend ran, recorded beside it; another plan of the same backend may add to the index."""
    if model is not None:
        return model.plan.name if model.plan is not None else None
    plan = previous.manifest.model.get("plan") if previous is not None else None
    return plan if isinstance(plan, str) else None


def _unique(articles: Iterable[Article], report: ReadReport) -> list[Article]:
    seen: dict[str, Article] = {}
    for article in articles:
        if article.id in seen:
            report.skip(article.path or article.id, f"duplicate article id {article.id!r}; the first one is kept")
            continue
        seen[article.id] = article
    return list(seen.values())
