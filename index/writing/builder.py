"""Write an index: read articles, split them into passages, embed what is new, and write a generation.

Every write (a first build, an update, a delete) reads the current generation, works out what changed,
reuses the vector of every passage whose embedded text is unchanged, and writes a complete new
generation; a failure at any point leaves the previous generation current and whole.
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
)
from semsearch.index.model.embedder import Embedder, ModelInfo, model_info, resolve_backend
from semsearch.index.reading.articles import Article, Passage, ReadReport, Skipped, article_problem, text_hash
from semsearch.index.reading.folding import normalize_id
from semsearch.index.reading.readers import display_path, read_corpus
from semsearch.index.reading.splitter import split_passages
from semsearch.index.storage.generations import write_generation, writer_lock
from semsearch.index.storage.lexical import ANALYSIS_VERSION, LexicalIndex
from semsearch.index.storage.manifest import FORMAT_VERSION, Manifest, library_versions
from semsearch.index.storage.store import StoredIndex, open_index
from semsearch.index.storage.vectors import VectorIndexInfo, build_vector_index
from semsearch.index.writing.changes import Plan, assign_ids, plan_changes
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


def delete_articles(settings: Settings, ids: Sequence[str], embedder: Embedder | None = None) -> BuildSummary:
    """Remove these articles (all must be in the index) in one new generation."""
    if not ids:
        raise InvalidArticleError("Give at least one article id to delete")
    return write_articles(settings, [], deletes=ids, embedder=embedder)


def write_articles(
    settings: Settings,
    upserts: Sequence[Article],
    deletes: Sequence[str] = (),
    prune: bool = False,
    rebuild: bool = False,
    embedder: Embedder | None = None,
    progress: ProgressFactory | None = None,
) -> BuildSummary:
    """Add or replace `upserts` and remove `deletes` in one new generation, under the writer lock.

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
        previous = _previous(settings, info, rebuild)
        try:
            stored_articles = previous.stored_articles() if previous and not rebuild else []
            stored_ids = {a.id for a in stored_articles}
            deletes = [d if d in stored_ids else normalize_id(d) for d in deletes]
            plan = plan_changes(stored_articles, upserts, deletes, prune)
            if previous is not None and not rebuild and not plan.changes_anything:
                return BuildSummary(
                    index=settings.index,
                    generation=None,
                    articles=previous.manifest.counts["articles"],
                    passages=previous.size,
                    unchanged=len(plan.unchanged),
                    vector_index=previous.vector_info,
                    seconds=time.perf_counter() - started,
                )
            if not plan.articles:
                raise InvalidArticleError(
                    f"This write would leave the index at {settings.index} empty; "
                    "delete the folder instead if that is meant"
                )
            summary = _write(settings, info, plan, previous, rebuild, embedder, progress, started)
            summary.warnings += [fallback] if fallback else []
            return summary
        finally:
            if previous is not None:
                previous.close()


def _previous(settings: Settings, info: ModelInfo, rebuild: bool) -> StoredIndex | None:
    """The current generation to update from, or None for a first build (or a rebuild of a bad one)."""
    try:
        previous = open_index(settings.index)
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
    plan: Plan,
    previous: StoredIndex | None,
    rebuild: bool,
    embedder: Embedder | None,
    progress: ProgressFactory | None,
    started: float,
) -> BuildSummary:
    """Split what changed, embed what is new, assemble every passage and write the generation."""
    stored = previous.stored_passages() if previous else []
    donors: dict[str, int] = {}
    for item in stored:  # vectors are reused from any stored passage, also across a rebuild
        donors.setdefault(item.embed_hash, item.id)
    if rebuild:
        plan = Plan(articles=plan.articles, added=[a.id for a in plan.articles])
        numbered, next_id = [], 0
    else:
        numbered, next_id = stored, previous.manifest.next_passage_id if previous else 0
    model = embedder
    by_article = {a.id: a for a in plan.articles}
    fresh: dict[str, list[tuple[Passage, str]]] = {}
    for article in plan.articles:
        if article.id in plan.to_split:
            model = model or Embedder.load(settings, info)
            fresh[article.id] = [
                (p, text_hash(passage_text_for_embedding(article, p, settings.embed_title)))
                for p in split_article(article, model, settings)
            ]
    assignment = assign_ids(plan, numbered, donors, fresh, next_id)
    position = {s.id: n for n, s in enumerate(assignment.passages)}
    texts = [
        passage_text_for_embedding(by_article[s.passage.article_id], s.passage, settings.embed_title)
        for s in (assignment.passages[position[pid]] for pid in assignment.to_embed)
    ]
    embed_started = time.perf_counter()
    if texts:
        model = model or Embedder.load(settings, info)
        new_vectors = model.embed_documents(texts, settings.batch_size, progress(len(texts)) if progress else None)
    embed_seconds = time.perf_counter() - embed_started
    dimension = model.dimension if model else previous.manifest.dimension if previous else 0
    vectors = np.zeros((len(assignment.passages), dimension), dtype=np.float32)
    if texts:
        vectors[[position[pid] for pid in assignment.to_embed]] = new_vectors
    if assignment.reuse_from and previous is not None:
        targets = list(assignment.reuse_from)
        vectors[[position[pid] for pid in targets]] = previous.vectors_of([assignment.reuse_from[t] for t in targets])
    for pid, source in assignment.copy_of.items():
        vectors[position[pid]] = vectors[position[source]]
    ids = np.array([s.id for s in assignment.passages], dtype=np.int64)
    vector_index, vector_info = build_vector_index(ids, vectors, settings.ann_threshold, settings.threads)
    lexical = LexicalIndex.build(
        lexical_text(by_article[s.passage.article_id], s.passage, settings.lexical_title) for s in assignment.passages
    )
    changes = {
        "added": len(plan.added),
        "updated": len(plan.updated),
        "removed": len(plan.removed),
        "unchanged": len(plan.unchanged),
        "embedded": len(texts),
        "reused": sum(len(v) for v in fresh.values()) - len(texts),
    }
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        model={**asdict(info), "plan": _embedding_plan(model if texts else None, previous)},
        dimension=dimension,
        max_tokens=model.max_tokens if model else previous.manifest.max_tokens if previous else 0,
        metric="inner_product",
        index_type=vector_info.type,
        counts={"articles": len(plan.articles), "passages": len(assignment.passages)},
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        build_seconds=round(time.perf_counter() - started, 3),
        settings={**{name: getattr(settings, name) for name in BUILD_SETTINGS}, "lexical_analysis": ANALYSIS_VERSION},
        versions=library_versions(),
        vector_index=vector_info.to_dict(),
        next_passage_id=assignment.next_passage_id,
        changes=changes,
    )
    generation = write_generation(
        settings.index, plan.articles, assignment.passages, vectors, vector_index, lexical, manifest
    )
    return BuildSummary(
        index=settings.index,
        generation=generation.name,
        articles=len(plan.articles),
        passages=len(assignment.passages),
        added=changes["added"],
        updated=changes["updated"],
        removed=changes["removed"],
        unchanged=changes["unchanged"],
        embedded=changes["embedded"],
        reused=changes["reused"],
        vector_index=vector_info,
        seconds=time.perf_counter() - started,
        embed_seconds=embed_seconds,
    )


def _embedding_plan(model: Embedder | None, previous: StoredIndex | None) -> str | None:
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
