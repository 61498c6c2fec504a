"""Incremental writes on a real index: add, replace, prune, delete; stable ids; vectors reused; ANN by size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from semsearch.errors import ArticleNotFoundError, IndexMismatchError, InvalidArticleError
from semsearch.index.model.embedder import Embedder
from semsearch.index.reading.articles import Article
from semsearch.index.storage.generations import current_generation
from semsearch.index.storage.manifest import MANIFEST
from semsearch.index.storage.store import open_index
from semsearch.index.writing.builder import build_index, delete_articles, write_articles
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
    old_vectors = dict(zip(index.row_ids.tolist(), index.vectors_of(index.row_ids.tolist()), strict=True))
    old_next = index.manifest.next_passage_id
    index.close()
    changed = dict(RECORDS[1])
    changed["text"] = str(changed["text"]) + "\n\nA closing paragraph about wind farms on the steppe, added later."
    corpus = write_corpus(tmp_path / "c", {"a.jsonl": jsonl([RECORDS[0], changed, *RECORDS[2:4], RECORDS[5]])})
    summary = build_index([corpus], settings, embedder=embedder)
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
            assert np.array_equal(index.vectors_of([pid])[0], old_vectors[pid])  # reused, not re-embedded
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
    size = open_index(settings.index).size
    small = settings.replace(ann_threshold=size + 5)
    corpus = write_corpus(tmp_path / "c", {"a.jsonl": jsonl(RECORDS[5:8])})
    grown = build_index([corpus], small, embedder=embedder)
    assert grown.vector_index is not None and grown.vector_index.type == "IDMap2,HNSW32"
    assert grown.vector_index.recall_at_10 >= 0.98 and "efSearch" in grown.vector_index.params
    searcher = Searcher.open(small, embedder)
    try:
        stats = searcher.stats()
        assert stats.vector_index["type"] == "IDMap2,HNSW32" and stats.index_type == "IDMap2,HNSW32"
        question = "wind power and energy cooperation in Central Asia"
        hits = searcher.search(question, k=5)
        assert len(hits) == 5
        one = str(RECORDS[6]["_id"])
        options = searcher.defaults.replace(per_article=0, filters=Filters(article_id=one))
        filtered = searcher.search(question, k=3, options=options)
        assert {h.article_id for h in filtered} == {one} and len(filtered) == 3
    finally:
        searcher.close()
    shrunk = delete_articles(small, [str(r["_id"]) for r in RECORDS[5:8]])
    assert shrunk.vector_index is not None and shrunk.vector_index.type == "IDMap2,Flat"
