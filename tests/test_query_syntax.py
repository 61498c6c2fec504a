"""The query language: the grammar's table, its properties on generated queries, `admits`, and the term masks
that let retrieval keep only passages that can pass it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from semsearch.index.model.embedder import Embedder
from semsearch.index.reading.folding import fold
from semsearch.index.storage.lexical import ANALYZER
from semsearch.index.storage.postings import Postings
from semsearch.index.storage.store import StoredIndex, open_index
from semsearch.index.writing.builder import build_index, delete_articles, lexical_text
from semsearch.search.query_syntax import QUOTES, ParsedQuery, parse
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS, jsonl, write_corpus

P = ParsedQuery
GRAMMAR = [
    # a query without operators is itself, byte for byte
    ("belt and road", P("belt and road")),
    ("  belt\tand  road ", P("  belt\tand  road ")),
    # phrases: straight, typographic and German quotes; the words are ranked, the quotes are not
    ('"belt and road" projects', P("belt and road projects", ("belt and road",))),
    ("“belt and road” projects", P("belt and road projects", ("belt and road",))),
    ("„belt and road“", P("belt and road", ("belt and road",))),
    ('"a" "b c"', P("a b c", ("a", "b c"))),
    ('"a""b"', P("a b", ("a", "b"))),
    ('x"belt and road"y', P("x belt and road y", ("belt and road",))),
    ('"belt and road" "belt and road"', P("belt and road belt and road", ("belt and road",))),
    # an unpaired quote is a character; empty quotes are nothing
    ('unclosed "quote here', P('unclosed "quote here')),
    ('"a b" and "c', P('a b and "c', ("a b",))),
    ('a "" b', P("a b")),
    ('a""b', P("a b")),
    ('"!?" x', P("x")),
    ('""', P('""')),
    # exclusions: at the start or after whitespace, before a word character or a phrase
    ("china -russia", P("china", (), ("russia",))),
    ("-russia china", P("china", (), ("russia",))),
    ("china -russia trade", P("china trade", (), ("russia",))),
    ("china -russia, trade", P("china trade", (), ("russia",))),
    ("-a -b c -d", P("c", (), ("a", "b", "d"))),
    ('china -"south china sea"', P("china", (), ('"south china sea"',))),
    (
        '"belt and road" -"south china sea" -energy',
        P("belt and road", ("belt and road",), ('"south china sea"', "energy")),
    ),
    ("china -e-mail", P("china", (), ("e-mail",))),
    ('china -bar"baz qux"', P("china baz qux", ("baz qux",), ("bar",))),
    ('x -""', P("x")),
    # hyphens that are not exclusions
    ("e-mail Abu-Dhabi 2012-05", P("e-mail Abu-Dhabi 2012-05")),
    ("a - b", P("a - b")),
    ("a -- b --c", P("a -- b --c")),
    ("a -", P("a -")),
    ("x-y -", P("x-y -")),
    ('"x"-y', P("x -y", ("x",))),
    ('a -"b', P('a -"b')),
    ('"a -b"', P("a -b", ("a -b",))),
    # nothing left to rank: the query is read literally
    ("-china", P("-china")),
    ('-"south china sea"', P('-"south china sea"')),
    ("-a -b", P("-a -b")),
    ('-a ""', P('-a ""')),
]


@pytest.mark.parametrize(("query", "expected"), GRAMMAR, ids=[q for q, _ in GRAMMAR])
def test_the_grammar(query: str, expected: ParsedQuery) -> None:
    parsed = parse(query)
    assert parsed == expected
    assert parsed.has_operators == bool(expected.phrases or expected.excluded)


LEADING_MINUS = re.compile(r"(?:^|(?<=\s))-(?=\w)")
TEXT = st.text(st.one_of(st.sampled_from(" -\t\n_aZé1.,'’«»\u00a0\u2028"), st.characters()), max_size=80)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(TEXT)
def test_a_query_without_operators_is_itself(raw: str) -> None:
    query = LEADING_MINUS.sub("--", "".join("'" if ch in QUOTES else ch for ch in raw))
    assert parse(query) == ParsedQuery(query)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(st.one_of(st.sampled_from('"“”„＂- \t_ab'), st.characters()), max_size=200))
def test_parse_never_fails_and_leaves_something_to_rank(query: str) -> None:
    parsed = parse(query)
    assert parsed.text.strip() or not query.strip()
    if parsed.has_operators:
        assert all(re.search(r"\w", item) for item in (*parsed.phrases, *parsed.excluded))
    else:
        assert parsed.phrases == parsed.excluded == ()
    assert parsed.admits(query, query) in (True, False)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=5000))
def test_parse_reads_any_long_text(query: str) -> None:
    parse(query).admits(query, None)


ADVERSARIAL = [
    '"' * 10_001,
    "-" * 10_000,
    ' -"' * 5_000,
    "-a " * 5_000,
    '"a" ' * 5_000,
    "“-" * 5_000,
    '-"' + "a " * 5_000,
    " " * 10_000 + "-a",
]


@pytest.mark.parametrize("query", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_adversarial_queries_complete(query: str) -> None:
    parsed = parse(query)
    passage = ("a " * 20_000) + "b"
    parsed.admits(passage, passage)
    parse('"' + "a " * 5_000 + 'c" x').admits(passage, None)  # a phrase almost everywhere, never whole


PHRASE_WORD = st.text("abcé", min_size=1, max_size=4)
OTHER_WORD = st.text("xyz0_", min_size=1, max_size=6)  # never a word of the phrase
SEPARATOR = st.sampled_from([" ", "-", ", ", "  ", "\n", " — ", "/", "."])


@st.composite
def passage_with_phrase(draw: st.DrawFn) -> tuple[list[str], list[str], list[str], list[str]]:
    """(phrase words, words before, the phrase as written in the passage, words after)."""
    words = draw(st.lists(PHRASE_WORD, min_size=1, max_size=5))
    written = [w.upper() if draw(st.booleans()) else w for w in words]
    return words, draw(st.lists(OTHER_WORD, max_size=4)), written, draw(st.lists(OTHER_WORD, max_size=4))


def join(words: list[str], draw_separator: st.DataObject) -> str:
    out = ""
    for n, word in enumerate(words):
        out += (draw_separator.draw(SEPARATOR) if n else "") + word
    return out


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(passage_with_phrase(), st.data(), st.integers(min_value=0))
def test_a_phrase_admits_its_words_in_order_and_nothing_less(
    parts: tuple[list[str], list[str], list[str], list[str]], data: st.DataObject, pick: int
) -> None:
    words, before, written, after = parts
    query = parse(f'x "{" ".join(words)}"')
    assert query.phrases == (" ".join(words),)
    passage = " ".join(filter(None, [join(before, data), join(written, data), join(after, data)]))
    assert query.admits(passage, None)
    assert query.admits("nothing here", passage)  # or in the title
    assert not query.admits("nothing here", None)
    n = pick % len(written)
    altered = [*written[:n], written[n] + "x", *written[n + 1 :]]
    removed = written[:n] + written[n + 1 :]
    for changed in (altered, removed):
        text = " ".join(filter(None, [join(before, data), join(changed, data), join(after, data)]))
        assert not query.admits(text, None)
        assert not query.admits(text, "x y z")


def test_phrases_match_whole_words_and_fold_case_and_normal_forms() -> None:
    query = parse('"belt and road"')
    assert query.admits("The Belt-and-Road initiative", None)
    assert query.admits("belt and  road,", None)
    assert query.admits("x", "BELT AND ROAD")
    assert not query.admits("belted and roads", None)
    assert not query.admits("belt, road and", None)
    assert not query.admits("belt_and_road", None)  # the underscore is a word character
    cafe = parse('"caf\u00e9 owners"')  # composed in the query, decomposed in the passage
    assert cafe.admits("Cafe\u0301 owners protest", None)
    assert cafe.admits("ＣＡＦÉ ＯＷＮＥＲＳ", None)
    assert not cafe.admits("cafe owners", None)  # accents stay, as in BM25: see the module's docstring


EXCLUDABLE = st.text("abcdeiost", min_size=1, max_size=6)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(EXCLUDABLE, min_size=1, max_size=8), st.integers(min_value=0), st.booleans())
def test_an_excluded_word_that_is_there_refuses_the_passage(words: list[str], pick: int, in_title: bool) -> None:
    word = words[pick % len(words)]
    passage = " ".join(words)
    query = parse(f"zzz -{word.upper()}")
    assert query.excluded == (word.upper(),)
    if in_title:
        assert not query.admits("zzz", passage)
    else:
        assert not query.admits(passage, None)
    assert not parse(f'zzz -"{passage}"').admits(f"x {passage}.", None)
    assert parse(f'zzz -"{passage} qq"').admits(passage, None)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.text("abcdeiost", min_size=1, max_size=6), max_size=10), EXCLUDABLE)
def test_a_single_excluded_word_refuses_by_term_exactly_when_it_has_one(words: list[str], word: str) -> None:
    passage = " ".join(words)
    query = parse(f"zzz -{word}")
    terms = query.excluded_terms(ANALYZER)
    assert terms == ANALYZER.terms(word)  # a stop word or one letter has none
    if terms:
        assert query.admits(passage, None) == (terms[0] not in ANALYZER.terms(passage))
    else:
        assert query.admits(passage, None) == (fold(word) not in fold(passage).split())


def test_exclusion_by_term_takes_every_form_of_the_word() -> None:
    query = parse("pipelines -energy")
    assert query.excluded_terms(ANALYZER) == ["energi"]
    assert not query.admits("Energies of Central Asia", None)
    assert query.admits("Central Asia", "Pipelines")
    assert not query.admits("Central Asia", "Energy")
    stop = parse("pipelines -the")  # a stop word has no term: the word itself is excluded
    assert stop.excluded_terms(ANALYZER) == []
    assert not stop.admits("The pipeline", None) and stop.admits("A pipeline", None)
    compound = parse("china -e-mail")  # two words: excluded together, not by the term "mail"
    assert compound.excluded_terms(ANALYZER) == []
    assert not compound.admits("Send an E-Mail", None) and compound.admits("Send mail", None)
    quoted = parse('china -"energy"')  # a quoted word is excluded exactly
    assert quoted.excluded_terms(ANALYZER) == []
    assert not quoted.admits("energy", None) and quoted.admits("energies", None)


def test_required_terms_are_the_phrases_terms() -> None:
    query = parse('"belt and road" -energy "Energies of Asia" x')
    assert query.required_terms(ANALYZER) == ["belt", "road", "energi", "asia"]
    assert parse("belt and road").required_terms(ANALYZER) == []
    assert not parse("x -y").admits("y", None) and parse("x y").admits("y", None)


ITEM = st.tuples(st.sampled_from(["word", "-word", "phrase", "-phrase"]), st.lists(EXCLUDABLE, min_size=1, max_size=3))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(ITEM, min_size=1, max_size=6))
def test_the_ranked_text_holds_no_excluded_word_unless_also_asked_for(items: list[tuple[str, list[str]]]) -> None:
    pieces = {
        "word": lambda w: w[0],
        "-word": lambda w: "-" + w[0],
        "phrase": lambda w: '"' + " ".join(w) + '"',
        "-phrase": lambda w: '-"' + " ".join(w) + '"',
    }
    query = " ".join(pieces[kind](words) for kind, words in items)
    parsed = parse(query)
    asked = {w for kind, words in items if not kind.startswith("-") for w in (words if kind == "phrase" else words[:1])}
    negated = {w for kind, words in items if kind.startswith("-") for w in (words if kind == "-phrase" else words[:1])}
    if not asked:
        assert parsed == ParsedQuery(query)  # nothing left to rank: read literally
        return
    ranked = set(parsed.text.split())
    assert ranked == asked
    assert not (negated - asked) & ranked


@pytest.fixture(scope="module")
def small_index(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, base_settings: Settings
) -> Iterator[StoredIndex]:
    """Three Global Voices posts and a few short articles, one of them deleted so that passage ids have a hole."""
    root = tmp_path_factory.mktemp("syntax")
    records = [
        *GV_RECORDS[:3],
        {"id": "bri", "title": "Belt and Road", "text": "Energy projects along the road.\n\nPipelines to China."},
        {"id": "gone", "title": "Gone", "text": "A belt and road story that is deleted."},
        {"id": "sea", "title": "Seas", "text": "The South China Sea and the Belt-and-Road energies."},
    ]
    settings_ = base_settings.replace(index=root / "index")
    build_index([write_corpus(root / "corpus", {"a.jsonl": jsonl(records)})], settings_, embedder=embedder)
    delete_articles(settings_, ["gone"], embedder=embedder)
    index = open_index(settings_.index)
    yield index
    index.close()


def scanned_terms(index: StoredIndex) -> dict[int, set[str]]:
    """Each stored passage's BM25 terms, analysed afresh from the stored article and passage."""
    articles = {a.id: a for a in index.stored_articles()}
    return {
        s.id: set(ANALYZER.terms(lexical_text(articles[s.passage.article_id], s.passage, True)))
        for s in index.stored_passages()
    }


def test_the_index_has_a_hole(small_index: StoredIndex) -> None:
    assert small_index.size < small_index.id_space


@settings(
    max_examples=200,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    deadline=None,
    derandomize=True,
    database=None,
)
@given(st.data())
def test_passages_with_terms_are_those_holding_every_term(small_index: StoredIndex, data: st.DataObject) -> None:
    scanned = scanned_terms(small_index)
    vocabulary = sorted(set().union(*scanned.values()))
    terms = data.draw(st.lists(st.sampled_from([*vocabulary, "zzzunknown", ""]), max_size=3))
    expected = np.zeros(small_index.id_space, dtype=np.bool_)
    for passage_id, held in scanned.items():
        expected[passage_id] = all(t in held for t in terms)
    assert np.array_equal(small_index.passages_with(terms), expected)


@settings(
    max_examples=200,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    deadline=None,
    derandomize=True,
    database=None,
)
@given(st.data())
def test_passages_without_terms_are_the_stored_ones_holding_none(small_index: StoredIndex, data: st.DataObject) -> None:
    scanned = scanned_terms(small_index)
    vocabulary = sorted(set().union(*scanned.values()))
    terms = data.draw(st.lists(st.sampled_from([*vocabulary, "zzzunknown", ""]), max_size=4))
    expected = np.zeros(small_index.id_space, dtype=np.bool_)  # a hole is no stored passage: never selected
    for passage_id, held in scanned.items():
        expected[passage_id] = not any(t in held for t in terms)
    assert np.array_equal(small_index.passages_without(terms), expected)


def test_passages_without_no_terms_are_every_stored_passage(small_index: StoredIndex) -> None:
    assert np.flatnonzero(small_index.passages_without([])).tolist() == sorted(scanned_terms(small_index))
    assert np.array_equal(small_index.passages_without(["zzzunknown", ""]), small_index.passages_with([]))


def test_passages_with_no_terms_are_every_stored_passage(small_index: StoredIndex) -> None:
    mask = small_index.passages_with([])
    assert np.flatnonzero(mask).tolist() == sorted(scanned_terms(small_index))
    assert not small_index.passages_with(["zzzunknown"]).any()


@settings(
    max_examples=200,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    deadline=None,
    derandomize=True,
    database=None,
)
@given(st.data())
def test_the_term_masks_keep_every_passage_a_query_admits(small_index: StoredIndex, data: st.DataObject) -> None:
    """A phrase cut from a stored passage: that passage passes `admits` and the required-terms mask; a single
    excluded word's mask leaves out exactly the passages `admits` refuses."""
    rows = small_index.passages([s.id for s in small_index.stored_passages()])
    row = data.draw(st.sampled_from(sorted(rows.values(), key=lambda r: r.passage_id)))
    words = re.findall(r"\w+", row.text)
    start = data.draw(st.integers(0, len(words) - 1))
    phrase = " ".join(words[start : start + data.draw(st.integers(1, 4))])
    query = parse(f'"{phrase}"')
    assert query.admits(row.text, row.title)
    assert small_index.passages_with(query.required_terms(ANALYZER))[row.passage_id]
    word = data.draw(st.sampled_from(words))
    excluding = parse(f"x -{word}")
    terms = excluding.excluded_terms(ANALYZER)
    assume(terms)
    refused = small_index.passages_with(terms)
    for other in rows.values():
        assert excluding.admits(other.text, other.title) == (not refused[other.passage_id])


def postings_of(docs: list[str]) -> Postings:
    return Postings.build([ANALYZER.terms(d) for d in docs])


def test_rows_with_a_term_read_the_postings(tmp_path: Path) -> None:
    docs = ["Energy pipelines to China", "Press freedom", "The energies of Asia", "energy"]
    index = postings_of(docs)
    assert index.rows_with_any(["energi"]).tolist() == [True, False, True, True]
    assert index.rows_with_any(["press"]).tolist() == [False, True, False, False]
    assert not index.rows_with_any(["zebra"]).any() and not index.rows_with_any([""]).any()
    index.save(tmp_path)
    assert Postings.load(tmp_path).rows_with_any(["energi"]).tolist() == [True, False, True, True]
    assert not postings_of(["0", "a b"]).rows_with_any([""]).any()  # no term at all


DOC_WORDS = st.sampled_from(["energy", "energies", "pipeline", "press", "freedom", "the", "a", "asia", "x"])


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(
    st.lists(st.lists(DOC_WORDS, max_size=6).map(" ".join), min_size=1, max_size=8),
    st.lists(st.sampled_from(["energi", "pipelin", "press", "freedom", "asia", "the", "zebra", ""]), max_size=5),
)
def test_rows_with_any_term_are_the_union_of_the_postings(docs: list[str], terms: list[str]) -> None:
    index = postings_of(docs)
    expected = [any(t in ANALYZER.terms(doc) for t in terms if t) for doc in docs]
    assert index.rows_with_any(terms).tolist() == expected
    assert index.rows_with_any([*terms, *terms]).tolist() == expected  # a repeated term changes nothing
