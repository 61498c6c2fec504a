"""Large indexes built through the storage layer, for `bench writes`: embedding a million passages here would
take hours, so the vectors are seeded synthetic ones (as `bench ann` draws them) and the text is tiled from a
real corpus; the segments, postings, metadata and commit are the engine's own, so the real write path, the
real server and the real merges work on them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import numpy as np

from semsearch.benchmarks.ann import synthetic_vectors
from semsearch.index.model.embedder import ModelInfo
from semsearch.index.reading.articles import Article, Passage, StoredPassage, text_hash
from semsearch.index.storage.commits import SegmentRef
from semsearch.index.storage.generations import write_generation, writer_lock
from semsearch.index.storage.lexical import ANALYSIS_VERSION, ANALYZER
from semsearch.index.storage.manifest import FORMAT_VERSION, Manifest, library_versions
from semsearch.index.storage.postings import Postings
from semsearch.index.storage.segment import write_segment
from semsearch.index.storage.vectors import segment_threshold
from semsearch.index.writing.builder import BUILD_SETTINGS, lexical_text, passage_text_for_embedding
from semsearch.index.writing.merge_policy import MergePolicy, SegmentSize
from semsearch.settings import Settings

PASSAGES_PER_ARTICLE = 9
SOURCES = ("Wire A", "Wire B", "Desk C", "Bureau D")


def tiered_layout(total: int, write_size: int, policy: MergePolicy) -> list[int]:
    """Segment sizes, oldest first, that the merge policy leaves after `total` passages arrive in writes of
    `write_size`: the index's usual segment count at that size."""
    segments: list[SegmentSize] = []
    added = 0
    while added < total:
        size = min(write_size, total - added)
        segments.append(SegmentSize(f"s{len(segments):06d}-{added}", size, 0))
        added += size
        while groups := policy.find_merges(segments):
            for group in groups:
                names = set(group)
                merged = sum(s.live for s in segments if s.name in names)
                first = min(n for n, s in enumerate(segments) if s.name in names)
                rest = [s for s in segments if s.name not in names]
                rest.insert(min(first, len(rest)), SegmentSize(f"m{added}-{first}", merged, 0))
                segments = rest
    return [s.passages for s in segments]


def tiled_articles(
    paragraphs: Sequence[str], titles: Sequence[str], passages: int
) -> list[tuple[Article, list[Passage]]]:
    """Articles of `PASSAGES_PER_ARTICLE` paragraphs each, tiled from real ones, with dates over three years and
    four sources, `passages` paragraphs in all."""
    out: list[tuple[Article, list[Passage]]] = []
    start = datetime(2010, 1, 1, tzinfo=UTC)
    n = 0
    while n < passages:
        count = min(PASSAGES_PER_ARTICLE, passages - n)
        texts = [paragraphs[(n + i) % len(paragraphs)] for i in range(count)]
        article_id = f"synthetic-{len(out):07d}"
        body = "\n\n".join(texts)
        spans, at = [], 0
        for i, text in enumerate(texts):
            spans.append(Passage(article_id, i, at, at + len(text), text))
            at += len(text) + 2
        day = start + timedelta(days=len(out) % 1095)
        article = Article(
            id=article_id,
            title=titles[len(out) % len(titles)],
            body=body,
            date=day.date().isoformat(),
            source=SOURCES[len(out) % len(SOURCES)],
        )
        out.append((article, spans))
        n += count
    return out


def build_synthetic(
    settings: Settings,
    info: ModelInfo,
    max_tokens: int,
    paragraphs: Sequence[str],
    titles: Sequence[str],
    sizes: Sequence[int],
    seed: int,
    dimension: int = 384,
) -> None:
    """An index at `settings.index` of `sum(sizes)` passages in segments of those sizes (each whole articles,
    so sizes are rounded to articles), committed once."""
    total = sum(sizes)
    vectors, _ = synthetic_vectors(total, dimension, seed)
    articles = tiled_articles(paragraphs, titles, total)
    refs: list[SegmentRef] = []
    next_id = 0
    at = 0
    with writer_lock(settings.index):
        for size in sizes:
            chosen: list[tuple[Article, list[Passage]]] = []
            count = 0
            while at < len(articles) and count < size:
                chosen.append(articles[at])
                count += len(articles[at][1])
                at += 1
            if not chosen:
                break
            stored: list[StoredPassage] = []
            for article, passages in chosen:
                for passage in passages:
                    digest = text_hash(passage_text_for_embedding(article, passage, settings.embed_title))
                    stored.append(StoredPassage(next_id, passage, digest))
                    next_id += 1
            block = vectors[stored[0].id : next_id]
            postings = Postings.build(
                [ANALYZER.terms(lexical_text(a, p, settings.lexical_title)) for a, ps in chosen for p in ps]
            )
            written = write_segment(
                settings.index,
                [a for a, _ in chosen],
                stored,
                block,
                postings,
                segment_threshold(settings.ann_threshold, total),
                settings.threads,
            )
            refs.append(written.ref())
            written.release()
        largest = max(refs, key=lambda r: r.passages)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            model={**asdict(info), "plan": None},
            dimension=dimension,
            max_tokens=max_tokens,
            metric="inner_product",
            index_type=str(largest.vector_index.get("type")),
            counts={"articles": at, "passages": next_id},
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
            build_seconds=0.0,
            settings={
                **{name: getattr(settings, name) for name in BUILD_SETTINGS},
                "lexical_analysis": ANALYSIS_VERSION,
            },
            versions=library_versions(),
            vector_index=dict(largest.vector_index),
            next_passage_id=next_id,
            changes={"added": at, "embedded": 0, "reused": next_id},
            segments=[r.to_dict() for r in refs],
        )
        write_generation(settings.index, manifest)


def sample_paragraphs(articles: Sequence[Article], limit: int = 20_000) -> tuple[list[str], list[str]]:
    """Paragraphs and titles of a real corpus to tile synthetic articles from."""
    paragraphs = [p.strip() for a in articles for p in a.body.split("\n\n") if len(p.strip()) >= 40]
    titles = [a.title for a in articles if a.title] or ["Untitled"]
    rng = np.random.default_rng(7)
    order = rng.permutation(len(paragraphs))[:limit]
    return [paragraphs[i] for i in order], titles
