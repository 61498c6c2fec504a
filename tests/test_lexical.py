"""The BM25 side: analyzer, ranking, masks, save and load, and highlights built on the same analyzer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from semsearch.index.model.embedder import Embedder
from semsearch.index.reading.readers import article_from_record
from semsearch.index.storage.generations import current_generation
from semsearch.index.storage.lexical import ANALYSIS_VERSION, ANALYZER, Analyzer
from semsearch.index.storage.manifest import MANIFEST
from semsearch.index.storage.postings import Bm25, Postings
from semsearch.index.writing.builder import write_articles
from semsearch.search.highlight import highlight_spans, query_terms
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS

DOCS = [
    "Kazakhstan and China sign energy agreements on oil pipelines.",
    "Press freedom in Kenya: bloggers and journalists.",
    "Energies of the region: Central Asian gas and the pipeline to China.",
    "A recipe for plov, with no politics at all.",
]


def test_remembered_stems_give_the_same_terms_and_the_memory_is_bounded() -> None:
    small = Analyzer(cache_words=3)
    for text in DOCS * 2:  # the second pass reads remembered stems
        assert small.spans(text) == ANALYZER.spans(text)
        assert small.terms(text) == ANALYZER.terms(text)
    assert 0 < len(small._stems) <= 3


def test_analyzer_lowercases_stems_and_drops_stop_words() -> None:
    assert ANALYZER.terms("The Pipelines of the ENERGY sector") == ["pipelin", "energi", "sector"]
    text = "Energies in Asia"
    assert [(text[s:e], term) for s, e, term in ANALYZER.spans(text)] == [("Energies", "energi"), ("Asia", "asia")]


def bm25(docs: list[str]) -> tuple[Postings, Bm25]:
    postings = Postings.build([ANALYZER.terms(d) for d in docs])
    return postings, Bm25([(postings, None)])


def test_bm25_scores_matching_passages_and_nothing_else() -> None:
    _, scorer = bm25(DOCS)
    scores = scorer.scores(ANALYZER.terms("energy pipeline China"))[0]
    assert set(np.flatnonzero(scores > 0).tolist()) == {0, 2}
    assert not scorer.scores(ANALYZER.terms("zebra"))[0].any()
    assert not scorer.scores([])[0].any()


def test_saved_postings_load_with_identical_scores(tmp_path: Path) -> None:
    postings, scorer = bm25(DOCS)
    postings.save(tmp_path)
    loaded = Postings.load(tmp_path)
    terms = ANALYZER.terms("Kenya journalists energy")
    assert loaded.size == 4
    assert np.array_equal(Bm25([(loaded, None)]).scores(terms)[0], scorer.scores(terms)[0])


def test_highlights_mark_stem_matches_but_not_stop_words() -> None:
    text = "The energies of Central Asia, and an energy pipeline."
    spans = highlight_spans(text, query_terms("energy in the Asia"))
    assert [text[s:e] for s, e in spans] == ["energies", "Asia", "energy"]
    assert highlight_spans(text, query_terms("the of and")) == []


def test_highlights_of_a_remembered_passage_follow_each_query() -> None:
    text = DOCS[2]
    first = highlight_spans(text, query_terms("gas pipeline"))
    again = highlight_spans(text, query_terms("Central Asian energies"))  # same text, analysed once
    assert [text[s:e] for s, e in first] == ["gas", "pipeline"]
    assert [text[s:e] for s, e in again] == ["Energies", "Central", "Asian"]


def test_a_corpus_without_a_single_term_builds_and_matches_nothing() -> None:
    postings, scorer = bm25(["0", "a b", "!!"])  # no word of two characters: an empty vocabulary
    assert postings.size == 3 and postings.terms == []
    assert not scorer.scores(ANALYZER.terms("a b 0 anything"))[0].any()


def test_fullwidth_halfwidth_and_case_folded_forms_give_the_same_terms() -> None:
    wide = ANALYZER.terms("ＥＮＥＲＧＹ Ｐｉｐｅｌｉｎｅｓ")
    assert wide == ANALYZER.terms("energy pipelines") == ["energi", "pipelin"]
    assert ANALYZER.terms("STRASSE") == ANALYZER.terms("Straße")
    _, scorer = bm25(["Ｅｎｅｒｇｙ in Asia", "Kenya journalists"])
    assert np.flatnonzero(scorer.scores(ANALYZER.terms("energy"))[0]).tolist() == [0]


def test_an_index_analysed_by_another_version_says_so_until_its_next_write(
    gv_settings: Settings, embedder: Embedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = gv_settings.replace(index=tmp_path / "index")
    shutil.copytree(gv_settings.index, settings.index)
    manifest = current_generation(settings.index) / MANIFEST
    assert json.loads(manifest.read_text())["settings"]["lexical_analysis"] == ANALYSIS_VERSION
    Searcher.open(settings, embedder).close()
    assert "analysed for BM25 by an earlier version" not in caplog.text
    data = json.loads(manifest.read_text())
    del data["settings"]["lexical_analysis"]  # as an index written before the version was recorded
    manifest.write_text(json.dumps(data))
    Searcher.open(settings, embedder).close()
    assert "analysed for BM25 by an earlier version" in caplog.text
    write_articles(settings, [article_from_record(GV_RECORDS[5], "x", "test")], embedder=embedder)
    caplog.clear()
    Searcher.open(settings, embedder).close()
    assert "analysed for BM25 by an earlier version" not in caplog.text
