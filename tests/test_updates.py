"""Incremental writes on a real index: add, replace, prune, delete; stable ids; vectors reused; ANN by size."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from semsearch.errors import ArticleNotFoundError, IndexMismatchError, InvalidArticleError
from semsearch.index.model.embedder import Embedder
from semsearch.index.reading.articles import Article
from semsearch.index.storage.generations import current_generation
from semsearch.index.storage.lexical import ANALYZER
from semsearch.index.storage.manifest import MANIFEST
from semsearch.index.storage.store import open_index
from semsearch.index.writing.builder import build_index, delete_articles, write_articles
from semsearch.index.writing.merging import optimize
from semsearch.search.filters import Filters
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS as RECORDS
from tests.helpers import jsonl, write_corpus


@pytest.fixture
def settings(gv_settings: Settings, tmp_path: Path) -> Settings:
    """A private copy of the small index of four posts, to change freely."""
    shutil.copytree(gv_settings.index, tmp_path / "index")
    return gv_settings.replace(index=tmp_path / "index")


def passages_by_article(settings: Settings) -> dict[str, list[tuple[int, str]]]:
    index = open_index(settings.index)
    try:
        out: dict[str, list[tuple[int, str]]] = {}
        for s in index.stored_passages():
            out.setdefault(s.passage.article_id, []).append((s.id, s.passage.text))
        return out
    finally:
        index.close()


def test_update_adds_replaces_and_keeps_ids_and_vectors(settings: Settings, embedder: Embedder, tmp_path: Path) -> None:
    before = passages_by_article(settings)
    index = open_index(settings.index)
    ids, vectors = index.stored_vectors()
    old_vectors = dict(zip(ids.tolist(), vectors, strict=True))
    old_next = index.manifest.next_passage_id
    old_segments = [r.name for r in index.refs]
    index.close()
    changed = dict(RECORDS[1])
    changed["text"] = str(changed["text"]) + "\n\nA closing paragraph about wind farms on the steppe, added later."
    corpus = write_corpus(tmp_path / "c", {"a.jsonl": jsonl([RECORDS[0], changed, *RECORDS[2:4], RECORDS[5]])})
    summary = build_index([corpus], settings.replace(merge=False), embedder=embedder)  # the write's own segment
    after = passages_by_article(settings)
    assert (summary.added, summary.updated, summary.removed, summary.unchanged) == (1, 1, 0, 3)
    new_texts = len(after[str(RECORDS[5]["_id"])]) + 1  # the new article, and the changed one's new last passage
    assert summary.embedded <= new_texts + 1 and summary.reused >= len(before[str(changed["_id"])]) - 1
    for article_id in (str(RECORDS[0]["_id"]), str(RECORDS[3]["_id"])):
        assert after[article_id] == before[article_id]  # untouched articles keep every id
    kept = set(before[str(changed["_id"])][:-1])
    assert kept <= set(after[str(changed["_id"])])  # unchanged paragraphs of a changed article keep their ids
    assert all(pid >= old_next for pid, _ in after[str(RECORDS[5]["_id"])])
    index = open_index(settings.index)
    try:
        for pid in (p for p, _ in after[str(RECORDS[0]["_id"])]):
            assert np.array_equal(index.vectors_of([pid])[0], old_vectors[pid])  # untouched, still the same
        for pid in kept:  # the changed article's unchanged paragraphs: their stored vectors, not embedded again
            assert np.array_equal(index.vectors_of([pid[0]])[0], old_vectors[pid[0]])
        # The write added one segment holding the new and the changed article; the old segment stays as it was,
        # with the changed article's old row tombstoned.
        refs = {r.name: r for r in index.refs}
        assert [r.name for r in index.refs][: len(old_segments)] == old_segments and len(refs) == len(old_segments) + 1
        assert refs[index.refs[-1].name].articles == 2
        assert len(refs[old_segments[0]].deleted) == 1
    finally:
        index.close()
    searcher = Searcher.open(settings, embedder)
    try:
        assert searcher.search("wind farms on the steppe", k=1)[0].article_id == changed["_id"]
    finally:
        searcher.close()


def test_nothing_changed_writes_nothing(settings: Settings, embedder: Embedder, tmp_path: Path) -> None:
    generation = current_generation(settings.index)
    corpus = write_corpus(tmp_path / "c", {"a.jsonl": jsonl(RECORDS[:2])})
    summary = build_index([corpus], settings, embedder=embedder)
    assert summary.generation is None and summary.unchanged == 2 and summary.embedded == 0
    assert current_generation(settings.index) == generation


def test_prune_and_delete_remove_articles_for_good(settings: Settings, embedder: Embedder, tmp_path: Path) -> None:
    before = passages_by_article(settings)
    corpus = write_corpus(tmp_path / "c", {"a.jsonl": jsonl(RECORDS[:3])})
    summary = build_index([corpus], settings, embedder=embedder, prune=True)
    assert (summary.removed, summary.unchanged, summary.embedded) == (1, 3, 0)
    gone = str(RECORDS[0]["_id"])
    delete_articles(settings, [gone])
    after = passages_by_article(settings)
    assert set(after) == {str(RECORDS[1]["_id"]), str(RECORDS[2]["_id"])}
    assert all(after[a] == before[a] for a in after)  # nothing renumbered
    searcher = Searcher.open(settings, embedder)
    try:
        assert searcher.article(gone) is None
        assert gone not in {h.article_id for h in searcher.search(str(RECORDS[0]["title"]), k=10)}
    finally:
        searcher.close()


def test_bad_writes_change_nothing(settings: Settings, embedder: Embedder) -> None:
    generation = current_generation(settings.index)
    with pytest.raises(ArticleNotFoundError):
        delete_articles(settings, [str(RECORDS[0]["_id"]), "no-such-article"])
    with pytest.raises(InvalidArticleError, match="path escape"):
        write_articles(settings, [Article(id="../../etc/passwd", title="t", body="Text.")], embedder=embedder)
    with pytest.raises(InvalidArticleError, match="empty"):
        delete_articles(settings, [str(r["_id"]) for r in RECORDS[:4]])
    assert current_generation(settings.index) == generation


def test_other_settings_need_a_rebuild(settings: Settings, embedder: Embedder, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c", {"a.jsonl": jsonl(RECORDS[5:6])})
    other = settings.replace(min_passage_chars=400)
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        build_index([corpus], other, embedder=embedder)
    summary = build_index([corpus], other, embedder=embedder, rebuild=True)
    assert summary.articles == 1 and summary.added == 1


def test_vectors_from_another_export_are_not_mixed_with_new_ones(
    settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    """An index whose vectors came from another export recipe takes no incremental write, and a rebuild
    re-embeds every passage instead of reusing them."""
    manifest_file = settings.index / current_generation(settings.index) / MANIFEST
    manifest = json.loads(manifest_file.read_text())
    manifest["model"]["export_revision"] = 1
    manifest_file.write_text(json.dumps(manifest))
    corpus = write_corpus(tmp_path / "c", {"a.jsonl": jsonl(RECORDS[:5])})
    with pytest.raises(IndexMismatchError, match="export revision 1"):
        build_index([corpus], settings, embedder=embedder)
    summary = build_index([corpus], settings, embedder=embedder, rebuild=True)
    assert summary.reused == 0 and summary.embedded == summary.passages
    index = open_index(settings.index)
    try:
        assert index.manifest.model["export_revision"] == embedder.info.export_revision
    finally:
        index.close()


def test_index_type_follows_the_corpus_size(settings: Settings, embedder: Embedder, tmp_path: Path) -> None:
    """Past the ANN threshold a segment written whole (here by `optimize`) gets a tuned HNSW graph; a write that
    only grows the index adds a small exact segment. A delete that takes the index back below the threshold
    leaves its deleted passages to the merge that drops them, which writes the segment exact again."""
    index = open_index(settings.index)
    size = index.size
    index.close()
    small = settings.replace(ann_threshold=size + 5)
    corpus = write_corpus(tmp_path / "c", {"a.jsonl": jsonl(RECORDS[5:8])})
    grown = build_index([corpus], small, embedder=embedder)
    assert grown.passages >= small.ann_threshold and not grown.merges
    assert grown.vector_index is not None and grown.vector_index.type == "IDMap2,Flat"  # the new, small segment
    merged = optimize(small)
    assert len(merged) == 1 and merged[0].passages == grown.passages
    index = open_index(small.index)
    try:
        assert [s["vector_index"] for s in index.segment_stats()] == ["IDMap2,HNSW32"]
        assert index.manifest.index_type == "IDMap2,HNSW32"
        assert index.vector_info.recall_at_10 >= 0.98 and "efSearch" in index.vector_info.params
    finally:
        index.close()
    question = "wind power and energy cooperation in Central Asia"
    searcher = Searcher.open(small, embedder)
    try:
        stats = searcher.stats()
        assert stats.vector_index["type"] == "IDMap2,HNSW32" and stats.index_type == "IDMap2,HNSW32"
        hits = searcher.search(question, k=5)
        assert len(hits) == 5
        one = str(RECORDS[6]["_id"])
        options = searcher.defaults.replace(per_article=0, filters=Filters(article_id=one))
        filtered = searcher.search(question, k=3, options=options)
        assert {h.article_id for h in filtered} == {one} and len(filtered) == 3
    finally:
        searcher.close()
    gone = [str(r["_id"]) for r in RECORDS[5:8]]
    shrunk = delete_articles(small, gone)
    assert shrunk.passages == size < small.ann_threshold
    # The delete itself only tombstones rows of the HNSW segment; so many deleted rows call for a merge, which
    # rewrites the segment from its live rows, exact now that the index is below the threshold.
    assert shrunk.vector_index is not None and shrunk.vector_index.type == "IDMap2,HNSW32"
    assert len(shrunk.merges) == 1 and shrunk.merges[0].expunged == grown.passages - size
    searcher = Searcher.open(small, embedder)
    try:
        stats = searcher.stats()
        assert stats.index_type == "IDMap2,Flat" and stats.vector_index["type"] == "IDMap2,Flat"
        assert [(s["vector_index"], s["deleted"]) for s in stats.segments] == [("IDMap2,Flat", 0)]
        assert stats.passages == size
        found = searcher.search(question, k=10)
        assert found and not {h.article_id for h in found} & set(gone)
    finally:
        searcher.close()


def test_a_title_change_keeps_passage_ids_and_phrase_filters_see_only_the_new_title(
    settings: Settings, embedder: Embedder
) -> None:
    """With titles in BM25 but not in the embedded text (the defaults), a new title keeps every passage id and
    vector, so the old rows (deleted) and the new ones share ids: term filters must read the live rows only."""
    assert settings.lexical_title and not settings.embed_title
    index = open_index(settings.index)
    try:
        article = index.stored_articles()[0]
        old_ids = sorted(
            i for i in range(index.id_space) if index.passage_articles[i] >= 0 and index.article_id_of(i) == article.id
        )
    finally:
        index.close()
    renamed = replace(article, title="Zebrafish of the northern lakes")
    summary = write_articles(settings, [renamed], embedder=embedder, merge=False)
    assert summary.updated == 1 and summary.embedded == 0
    index = open_index(settings.index)
    try:
        assert sum(s["deleted"] for s in index.segment_stats()) == len(old_ids)  # the old rows are still there
        mine = np.zeros(index.id_space, dtype=np.bool_)
        mine[old_ids] = True
        assert (index.matching_passages(article_id=article.id) == mine).all()  # the same ids, now live anew
        old_terms = [t for t in ANALYZER.terms(article.title) if t not in ANALYZER.terms(article.body)]
        assert old_terms  # a word the old title had and the body has not
        assert not (index.passages_with(old_terms[:1]) & mine).any()
        assert index.passages_without(old_terms[:1])[mine].all()
        assert (index.passages_with(["zebrafish"]) == mine).all()
        assert not (index.passages_without(["zebrafish"]) & mine).any()
    finally:
        index.close()


def test_a_reload_that_shares_segments_holds_what_a_fresh_load_holds(settings: Settings, embedder: Embedder) -> None:
    """A reload takes the article vectors of the segments it shares from the commit loaded before: after an
    update and a delete it must hold exactly what loading the new commit from disk gives."""
    before = open_index(settings.index)
    try:
        first, second = before.stored_articles()[:2]
        write_articles(
            settings, [replace(first, body=first.body + "\n\nA correction.")], embedder=embedder, merge=False
        )
        delete_articles(settings, [second.id], embedder=embedder, merge=False)
        shared = open_index(settings.index, reuse=before)
        fresh = open_index(settings.index)
        try:
            assert len(shared.segments) > 1 and shared.segments[0] is before.segments[0]
            assert shared.article_ids == fresh.article_ids and second.id not in shared.article_ids
            assert np.array_equal(shared.article_vectors, fresh.article_vectors)
            assert np.array_equal(shared.passage_articles, fresh.passage_articles)
        finally:
            shared.close()
            fresh.close()
    finally:
        before.close()
