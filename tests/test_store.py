from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from semsearch.errors import (
    CorruptIndexError,
    EmptyCorpusError,
    IndexBusyError,
    IndexMismatchError,
    NoIndexError,
)
from semsearch.index.model.embedder import Embedder
from semsearch.index.storage.folder import ROOT_MARKER
from semsearch.index.storage.generations import CURRENT, current_generation, writer_lock
from semsearch.index.storage.manifest import MANIFEST, file_sha256
from semsearch.index.storage.postings import FREQS, INDPTR, LENGTHS, ROWS, TERMS
from semsearch.index.storage.segment import (
    ARTICLE_VECTORS,
    IDS,
    METADATA,
    OWNERS,
    POSTINGS_DIR,
    SEGMENT_MANIFEST,
    VECTORS,
)
from semsearch.index.storage.store import open_index
from semsearch.index.writing.builder import build_index, passage_text_for_embedding
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings
from tests.helpers import write_corpus

SMALL = {
    "energy.txt": "Pipeline deal signed\n\nKazakhstan and China agreed to build a new gas pipeline across the steppe "
    "to carry natural gas to western China.\n\nThe agreement also covers oil exports and a refinery upgrade.",
    "football.txt": "Cup final\n\nThe national football team won the cup final after a penalty shoot-out in front "
    "of forty thousand fans.\n\nFans celebrated in the streets of the capital until morning.",
    "rain.md": "# Floods\n\nHeavy rain flooded villages in the valley and rescuers evacuated hundreds of families "
    "by boat.\n\nThe weather service warned of more storms this week.",
}


@pytest.fixture()
def small_settings(tmp_path: Path, base_settings: Settings, embedder: Embedder) -> Settings:
    settings = base_settings.replace(index=tmp_path / "index", min_passage_chars=40)
    build_index([write_corpus(tmp_path / "corpus", SMALL)], settings, embedder=embedder)
    return settings


def brute_force(searcher: Searcher, embedder: Embedder) -> tuple[np.ndarray, np.ndarray]:
    """Passage vectors re-embedded from the stored text, and each passage's article centroid."""
    rows = searcher.index.passages(list(range(searcher.index.size)))
    for row in rows.values():
        article = searcher.article(row.article_id)
        assert article is not None and article.body[row.start : row.end] == row.text
    vectors = embedder.embed_documents([rows[pid].text for pid in range(len(rows))])
    owners = [rows[pid].article_id for pid in range(len(rows))]
    centroids = {}
    for article_id in set(owners):
        mean = vectors[[i for i, o in enumerate(owners) if o == article_id]].mean(axis=0)
        centroids[article_id] = mean / np.linalg.norm(mean)
    return vectors, np.vstack([centroids[o] for o in owners])


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_saved_index_answers_like_brute_force(small_settings: Settings, embedder: Embedder, weight: float) -> None:
    searcher = Searcher.open(small_settings.replace(article_weight=weight), embedder)
    try:
        vectors, centroids = brute_force(searcher, embedder)
        for question in ("gas pipeline to China", "penalty shoot-out", "villages flooded by rain"):
            query = embedder.embed_query(question)[0]
            expected_scores = (1 - weight) * (vectors @ query) + weight * (centroids @ query)
            expected = np.argsort(-expected_scores, kind="stable")[:4]
            exact = searcher.defaults.replace(mode="dense", per_article=0, duplicate_threshold=2.0)
            hits = searcher.search(question, 4, exact)
            assert [h.score for h in hits] == pytest.approx(expected_scores[expected].tolist(), abs=1e-5)
            if weight < 1.0:
                assert [h.passage_id for h in hits] == expected.tolist()
            else:  # passages of one article tie; the article order is fixed
                owners = [searcher.index.passages([int(i)])[int(i)].article_id for i in expected]
                assert [h.article_id for h in hits] == owners
        first = [(h.passage_id, h.score) for h in searcher.search("oil exports", k=3)]
    finally:
        searcher.close()
    reopened = Searcher.open(small_settings.replace(article_weight=weight), embedder)
    try:
        assert [(h.passage_id, h.score) for h in reopened.search("oil exports", k=3)] == first
    finally:
        reopened.close()


def test_a_search_from_any_thread_runs_faiss_on_one_thread(
    small_settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    """OpenMP's thread count is per thread: a server's worker thread must not start FAISS at OMP_NUM_THREADS.
    (An exact segment is scanned with numpy; FAISS runs a search on a segment with an HNSW graph.)"""
    graphed = small_settings.replace(index=tmp_path / "graphed", ann_threshold=2)
    build_index([write_corpus(tmp_path / "graphed-corpus", SMALL)], graphed, embedder=embedder)
    faiss.omp_set_num_threads(4)  # what a worker thread would start with under OMP_NUM_THREADS=4
    stored = open_index(graphed.index)
    assert [s.approximate for s in stored.segments] == [True]
    seen: list[int] = []

    def worker() -> None:
        faiss.omp_set_num_threads(4)
        stored.search(embedder.embed_query("gas pipeline"), 2)
        seen.append(faiss.omp_get_max_threads())

    try:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    finally:
        stored.close()
        faiss.omp_set_num_threads(1)
    assert seen == [1]


def test_article_facts_are_built_once_for_all_threads(small_settings: Settings) -> None:
    stored = open_index(small_settings.index)
    start = threading.Barrier(8)
    seen: list[object] = []

    def worker() -> None:
        start.wait()
        seen.append(stored.article_facts())

    try:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        facts = stored.article_facts()
        articles = stored.stored_articles()
    finally:
        stored.close()
    assert len(seen) == 8 and all(found is facts for found in seen)
    assert [a.id for a in articles] == stored.article_ids
    assert facts.sources == [a.source for a in articles]
    assert facts.months == [a.date[:7] if a.date else None for a in articles]
    assert np.isnan(facts.times).tolist() == [a.date is None for a in articles]


def test_manifest_records_model_and_counts(small_settings: Settings, embedder: Embedder) -> None:
    manifest = json.loads((current_generation(small_settings.index) / "manifest.json").read_text())
    assert manifest["model"]["fingerprint"] == embedder.info.fingerprint
    assert manifest["model"]["backend"] == embedder.info.backend == "onnx-int8"  # the default backend
    assert manifest["dimension"] == 384 and manifest["metric"] == "inner_product"
    assert manifest["counts"] == {"articles": 3, "passages": 6}
    # One segment, named with the checksum of its record, which holds a checksum of every file of it (no graph:
    # the index is below the ANN threshold).
    [segment] = manifest["segments"]
    folder = small_settings.index / segment["name"]
    assert (segment["passages"], segment["articles"], segment["deleted"]) == (6, 3, [])
    assert segment["checksum"] == file_sha256(folder / SEGMENT_MANIFEST)
    record = json.loads((folder / SEGMENT_MANIFEST).read_text())
    postings = {f"{POSTINGS_DIR}/{name}" for name in (TERMS, INDPTR, ROWS, FREQS, LENGTHS)}
    assert set(record["files"]) == {VECTORS, IDS, OWNERS, ARTICLE_VECTORS, METADATA, *postings}
    assert all(record["files"][name] == file_sha256(folder / name) for name in record["files"])
    assert manifest["index_type"] == segment["vector_index"]["type"] == "IDMap2,Flat"
    assert {"faiss-cpu", "torch", "sentence-transformers", "numpy"} <= set(manifest["versions"])


def test_title_embedding_is_a_setting(small_settings: Settings, embedder: Embedder) -> None:
    index = open_index(small_settings.index)
    try:
        assert index.manifest.settings["embed_title"] is False
        record, passages = index.article("energy.txt") or ({}, [])
    finally:
        index.close()
    from semsearch.index.reading.articles import Article, Passage

    article = Article(id="a", title=record["title"], body=record["body"])
    passage = Passage("a", 0, passages[0].start, passages[0].end, passages[0].text)
    assert passage_text_for_embedding(article, passage, True) == f"Pipeline deal signed\n{passage.text}"
    assert passage_text_for_embedding(article, passage, False) == passage.text


def test_failed_builds_leave_the_index_untouched(small_settings: Settings, embedder: Embedder, tmp_path: Path) -> None:
    before = Searcher.open(small_settings, embedder)
    expected = [(h.passage_id, h.score) for h in before.search("gas pipeline", k=5)]
    generation = before.index.generation.name
    before.close()

    empty = write_corpus(tmp_path / "empty", {"blank.txt": "   ", "note.png": b"\x89PNG"})
    with pytest.raises(EmptyCorpusError, match="No index was written"):
        build_index([empty], small_settings, embedder=embedder)

    def interrupt(_total: int):  # stands in for Ctrl-C in the middle of embedding
        def update(_n: int) -> None:
            raise KeyboardInterrupt

        return update

    with pytest.raises(KeyboardInterrupt):
        build_index(
            [write_corpus(tmp_path / "other", {"x.txt": "X\n\nSomething else entirely."})],
            small_settings,
            embedder=embedder,
            progress=interrupt,
        )

    after = Searcher.open(small_settings, embedder)
    try:
        assert after.index.generation.name == generation
        assert [(h.passage_id, h.score) for h in after.search("gas pipeline", k=5)] == expected
    finally:
        after.close()
    segments = [r.name for r in after.index.refs]
    kept = sorted(p.name for p in small_settings.index.iterdir() if p.name not in (".lock", ROOT_MARKER))
    assert kept == sorted([CURRENT, generation, *segments])  # no half-written segment or commit is left


def test_empty_corpus_writes_no_index(tmp_path: Path, base_settings: Settings, embedder: Embedder) -> None:
    settings = base_settings.replace(index=tmp_path / "new-index")
    with pytest.raises(EmptyCorpusError):
        build_index([write_corpus(tmp_path / "c", {"a.txt": ""})], settings, embedder=embedder)
    assert not settings.index.exists()


def test_rebuild_replaces_generation(small_settings: Settings, embedder: Embedder, tmp_path: Path) -> None:
    """A rebuild commits new segments only; the commit before stays one write for readers, and its segments
    as long as a reader holds them."""
    old = current_generation(small_settings.index)
    reader = open_index(small_settings.index)
    old_segments = [s.folder for s in reader.segments]
    build_index(
        [write_corpus(tmp_path / "c2", {"only.txt": "Only\n\nA single article about tea."})],
        small_settings,
        embedder=embedder,
        rebuild=True,
    )
    new = current_generation(small_settings.index)
    assert new != old and old.exists()  # the previous commit stays for readers that read CURRENT before
    assert all(f.is_dir() for f in old_segments)  # held by a reader
    assert reader.article("energy.txt") is not None  # which still reads the index it opened
    reader.close()
    build_index([tmp_path / "c2"], small_settings, embedder=embedder, rebuild=True)
    assert not old.exists() and new.exists()
    assert not any(f.exists() for f in old_segments)  # unheld, named by no kept commit: removed
    searcher = Searcher.open(small_settings, embedder)
    try:
        assert {h.article_id for h in searcher.search("tea", k=5)} == {"only.txt"}
    finally:
        searcher.close()


def test_second_writer_is_refused(small_settings: Settings, embedder: Embedder, tmp_path: Path) -> None:
    with writer_lock(small_settings.index), pytest.raises(IndexBusyError, match="another process"):
        build_index([write_corpus(tmp_path / "c3", {"a.txt": "A\n\nB"})], small_settings, embedder=embedder)


def test_missing_and_corrupt_index_give_clear_errors(small_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(NoIndexError, match="semsearch index"):
        open_index(tmp_path / "nowhere")
    copy = tmp_path / "copy"
    shutil.copytree(small_settings.index, copy)
    [segment] = json.loads((current_generation(copy) / MANIFEST).read_text())["segments"]
    vectors = copy / segment["name"] / VECTORS
    vectors.write_bytes(vectors.read_bytes()[:100])
    with pytest.raises(CorruptIndexError, match=str(vectors)):
        open_index(copy)
    (copy / CURRENT).write_text("gen-missing\n")
    with pytest.raises(CorruptIndexError, match="gen-missing"):
        open_index(copy)


def test_another_model_is_refused(small_settings: Settings, embedder: Embedder, tmp_path: Path) -> None:
    other_model = tmp_path / "other-model"
    shutil.copytree(embedder.info.path, other_model)
    (other_model / "README.md").write_text("a different model folder\n")
    with pytest.raises(IndexMismatchError, match="SEMSEARCH_MODEL="):
        Searcher.open(small_settings.replace(model=str(other_model)))


def test_dimension_mismatch_is_refused(small_settings: Settings, embedder: Embedder) -> None:
    from semsearch.index.storage.manifest import check_dimension

    index = open_index(small_settings.index)
    try:
        with pytest.raises(IndexMismatchError, match="384-dimensional"):
            check_dimension(index.manifest, 768, small_settings.index)
    finally:
        index.close()
