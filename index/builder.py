"""Build an index: read articles, split them into passages, embed, and write a new generation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from index.articles import Article, Passage, ReadReport, Skipped
from index.embedder import Embedder, model_info
from index.errors import EmptyCorpusError
from index.lexical import LexicalIndex
from index.manifest import FORMAT_VERSION, Manifest, library_versions
from index.readers import read_corpus
from index.settings import Settings
from index.splitter import split_passages
from index.store import write_generation, writer_lock

# Given the number of passages to embed, returns the callback that reports each embedded chunk.
ProgressFactory = Callable[[int], Callable[[int], None]]
INDEX_TYPE = "IDMap2,Flat"
_MIN_TITLE_BUDGET = 64


@dataclass
class BuildSummary:
    index: Path
    generation: str
    articles: int
    passages: int
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def passages_per_second(self) -> float:
        return self.passages / self.embed_seconds if self.embed_seconds > 0 else 0.0


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


def build_index(
    paths: Sequence[Path],
    settings: Settings,
    embedder: Embedder | None = None,
    progress: ProgressFactory | None = None,
) -> BuildSummary:
    """Index every article under `paths` into `settings.index` as a new generation.

    Nothing is written when the corpus holds no usable article, and a failure at any point
    leaves the previous generation current and whole.
    """
    started = time.perf_counter()
    report = ReadReport()
    articles = _unique(read_corpus(paths, settings.ignore, report), report)
    if not articles:
        reasons = "; ".join(f"{s.where}: {s.reason}" for s in report.skipped[:5])
        raise EmptyCorpusError(
            f"No article to index under {', '.join(map(str, paths))}"
            + (f" (skipped: {reasons})" if reasons else "")
            + "; give .txt, .md, .jsonl, .json, .csv or .html files with text. No index was written."
        )
    info = embedder.info if embedder else model_info(settings)
    with writer_lock(settings.index):
        embedder = embedder or Embedder.load(settings, info)
        passages: list[Passage] = []
        texts: list[str] = []
        lexical_texts: list[str] = []
        for article in articles:
            for passage in split_article(article, embedder, settings):
                passages.append(passage)
                texts.append(passage_text_for_embedding(article, passage, settings.embed_title))
                lexical_texts.append(lexical_text(article, passage, settings.lexical_title))
        embed_started = time.perf_counter()
        vectors = embedder.embed_documents(texts, settings.batch_size, progress(len(texts)) if progress else None)
        embed_seconds = time.perf_counter() - embed_started
        lexical = LexicalIndex.build(lexical_texts)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            model=dict(asdict(info)),
            dimension=embedder.dimension,
            max_tokens=embedder.max_tokens,
            metric="inner_product",
            index_type=INDEX_TYPE,
            counts={"articles": len(articles), "passages": len(passages)},
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
            build_seconds=round(time.perf_counter() - started, 3),
            settings={
                "embed_title": settings.embed_title,
                "lexical_title": settings.lexical_title,
                "min_passage_chars": settings.min_passage_chars,
            },
            versions=library_versions(),
        )
        generation = write_generation(settings.index, articles, passages, vectors, lexical, manifest)
    return BuildSummary(
        index=settings.index,
        generation=generation.name,
        articles=len(articles),
        passages=len(passages),
        skipped=report.skipped,
        warnings=report.warnings,
        seconds=time.perf_counter() - started,
        embed_seconds=embed_seconds,
    )


def _unique(articles: Iterable[Article], report: ReadReport) -> list[Article]:
    seen: dict[str, Article] = {}
    for article in articles:
        if article.id in seen:
            report.skip(article.path or article.id, f"duplicate article id {article.id!r}; the first one is kept")
            continue
        seen[article.id] = article
    return list(seen.values())
