"""The BM25 side: analyzer, ranking, masks, save and load, and highlights built on the same analyzer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semsearch.index.storage.lexical import ANALYZER, Analyzer, LexicalIndex
from semsearch.search.highlight import highlight_spans, query_terms

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


def test_bm25_ranks_matching_passages_and_skips_the_rest() -> None:
    index = LexicalIndex.build(DOCS)
    scores, ids = index.search(ANALYZER.terms("energy pipeline China"), k=10)
    assert set(ids.tolist()) == {0, 2}
    assert list(scores) == sorted(scores, reverse=True) and all(scores > 0)
    assert index.search(ANALYZER.terms("zebra"), k=10)[1].size == 0
    assert index.search([], k=10)[1].size == 0


def test_a_mask_limits_bm25_to_allowed_passages() -> None:
    index = LexicalIndex.build(DOCS)
    allowed = np.array([False, True, True, True])
    _, ids = index.search(ANALYZER.terms("energy pipeline China"), k=10, allowed=allowed)
    assert ids.tolist() == [2]


def test_saved_index_loads_with_identical_scores(tmp_path: Path) -> None:
    index = LexicalIndex.build(DOCS)
    index.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    terms = ANALYZER.terms("Kenya journalists energy")
    assert loaded.size == 4
    assert np.array_equal(loaded.scores(terms), index.scores(terms))


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
