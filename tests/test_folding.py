"""Text compared as Unicode: folded sources and BM25 terms, NFKC queries, NFC ids, on their own and in an index."""

from __future__ import annotations

import shutil
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semsearch.index.model.embedder import Embedder
from semsearch.index.reading.folding import JOINERS, fold, folded_clusters, joins_previous, normalize_id
from semsearch.index.storage.lexical import ANALYZER
from semsearch.index.writing.builder import build_index, delete_articles
from semsearch.search.filters import Filters
from semsearch.search.searcher import Searcher, clean_query
from semsearch.settings import Settings
from tests.helpers import jsonl, write_corpus

CAFE_NFC, CAFE_NFD = "caf\u00e9", "cafe\u0301"


def fullwidth(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


def test_fold_is_unicode_case_folding_with_compatibility_forms() -> None:
    assert fold("Радио Азаттык") == fold("радио азаттык") == fold("РАДИО АЗАТТЫК")
    assert fold("ｅｎｅｒｇｙ") == fold("ENERGY") == "energy"
    assert fold("Straße") == fold("STRASSE") and fold(CAFE_NFD) == fold(CAFE_NFC.upper())


def test_ids_are_nfc_and_compatibility_forms_stay_distinct() -> None:
    assert normalize_id(CAFE_NFD) == normalize_id(CAFE_NFC) == CAFE_NFC
    assert normalize_id("ｅｎｅｒｇｙ") == "ｅｎｅｒｇｙ"  # an id is a key, not a word


def test_queries_are_nfkc_after_control_characters_go() -> None:
    assert clean_query("ｅｎｅｒｇｙ\u3000ｃｏｏｐｅｒａｔｉｏｎ") == "energy cooperation"
    assert clean_query(f" {CAFE_NFD}\x07 ") == CAFE_NFC
    assert clean_query("text \ud800 more") == "text more"


def test_fullwidth_and_halfwidth_give_the_same_terms_both_ways() -> None:
    text = "Energy pipelines across Central Asia"
    assert ANALYZER.terms(fullwidth(text)) == ANALYZER.terms(text) == ["energi", "pipelin", "across", "central", "asia"]
    assert ANALYZER.terms("ｶﾞｽ") == ANALYZER.terms("ガス")  # halfwidth kana, voicing mark included
    assert ANALYZER.terms(CAFE_NFD) == ANALYZER.terms(CAFE_NFC)


def test_highlight_spans_point_at_the_words_as_written() -> None:
    text = f"{fullwidth('Energy')} and {CAFE_NFD} and Straße"
    assert [(text[s:e], term) for s, e, term in ANALYZER.spans(text)] == [
        (fullwidth("Energy"), "energi"),
        (CAFE_NFD, "café"),
        ("Straße", "strass"),
    ]


@given(st.text(max_size=60))
def test_spans_find_the_terms_of_the_whole_text_at_offsets_into_it(text: str) -> None:
    spans = ANALYZER.spans(text)
    assert [term for _, _, term in spans] == ANALYZER.terms(text)
    assert all(0 <= s < e <= len(text) for s, e, _ in spans)
    assert [s for s, _, _ in spans] == sorted(s for s, _, _ in spans)


@given(st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=2, max_size=20))
def test_a_fullwidth_word_has_the_terms_of_its_ascii_form(word: str) -> None:
    assert ANALYZER.terms(fullwidth(word)) == ANALYZER.terms(word)


def test_folded_clusters_map_each_character_back_to_its_source() -> None:
    folded, starts, ends = folded_clusters(f"a{CAFE_NFD}ß")
    assert folded == f"a{CAFE_NFC}ss"
    assert list(zip(starts, ends, strict=True)) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 6), (6, 7), (6, 7)]


def test_the_joiners_are_the_characters_this_unicode_version_joins() -> None:
    """Recomputed from `unicodedata`: non-combining second halves of canonical pairs, and characters whose
    folded form starts with a combining mark."""
    found = set()
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        if 0xD800 <= code <= 0xDFFF or unicodedata.category(ch) == "Cn":
            continue
        parts = unicodedata.decomposition(ch).split()
        composes = unicodedata.normalize("NFC", unicodedata.normalize("NFD", ch)) == ch
        if len(parts) == 2 and not parts[0].startswith("<") and composes:
            second = chr(int(parts[1], 16))
            if not unicodedata.combining(second):
                found.add(second)
        if not unicodedata.combining(ch):
            folded = fold(ch)
            if folded and unicodedata.combining(folded[0]):
                found.add(ch)
    assert {ch for ch in found if not joins_previous(ch)} == set()
    assert found >= JOINERS


@pytest.fixture(scope="module")
def unicode_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[tuple[Settings, Searcher]]:
    root = tmp_path_factory.mktemp("unicode")
    records = [
        {"id": "azattyk", "title": "Новости", "source": "Радио Азаттык", "text": "Парламент принял закон о СМИ."},
        {"id": "gv", "title": "Energy", "source": "Global Voices", "text": "Energy pipelines across Central Asia."},
        {"id": "wide", "title": "Wide", "source": fullwidth("WIDE News"), "text": fullwidth("Solar") + " farms."},
        {"id": CAFE_NFD, "title": "Café", "source": "Straße", "text": "Owners of cafés in Almaty protest rents."},
    ]
    corpus = write_corpus(root / "corpus", {"feed.jsonl": jsonl(records), f"{CAFE_NFD}.txt": "Café\n\nA café."})
    settings = Settings(index=root / "index")
    build_index([corpus], settings, embedder=embedder)
    searcher = Searcher.open(settings, embedder)
    yield settings, searcher
    searcher.close()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("радио азаттык", {"azattyk"}),
        ("РАДИО АЗАТТЫК", {"azattyk"}),
        ("global voices", {"gv"}),
        ("wide news", {"wide"}),
        ("STRASSE", {CAFE_NFC}),
        ("радио", set()),
    ],
)
def test_the_source_filter_folds_unicode_case_and_width(
    unicode_index: tuple[Settings, Searcher], source: str, expected: set[str]
) -> None:
    _, searcher = unicode_index
    options = searcher.defaults.replace(filters=Filters.parse(source=source))
    assert {h.article_id for h in searcher.search("news", 10, options)} == expected


@pytest.mark.parametrize(("question", "expected"), [("ｓｏｌａｒ", "wide"), ("solar", "wide"), ("ＥＮＥＲＧＹ", "gv")])
def test_fullwidth_and_halfwidth_find_each_other_lexically(
    unicode_index: tuple[Settings, Searcher], question: str, expected: str
) -> None:
    _, searcher = unicode_index
    hits = searcher.search(question, 3, searcher.defaults.replace(mode="lexical"))
    assert [h.article_id for h in hits][:1] == [expected]
    assert hits[0].highlights and all(hits[0].text[s:e] for s, e in hits[0].highlights)


def test_nfc_and_nfd_ids_name_one_article(
    unicode_index: tuple[Settings, Searcher], embedder: Embedder, tmp_path: Path
) -> None:
    settings, searcher = unicode_index
    assert set(searcher.index.article_ids) == {"azattyk", "gv", "wide", CAFE_NFC, f"{CAFE_NFC}.txt"}
    for spelling in (CAFE_NFC, CAFE_NFD):
        article = searcher.article(spelling)
        assert article is not None and article.id == CAFE_NFC
        options = searcher.defaults.replace(filters=Filters.parse(article_id=spelling))
        assert {h.article_id for h in searcher.search("cafés", 5, options)} == {CAFE_NFC}
    copy = settings.replace(index=tmp_path / "index")
    shutil.copytree(settings.index, copy.index)
    assert delete_articles(copy, [f"{CAFE_NFD}.txt", CAFE_NFD], embedder=embedder).removed == 2
