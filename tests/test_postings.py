"""Segment postings and index-wide BM25: bm25s's scores, segment independence, merges, save and load."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semsearch.index.storage.postings import FREQS, INDPTR, LENGTHS, ROWS, TERMS, Bm25, Postings

Corpus = list[list[str]]
Parts = list[tuple[Corpus, list[bool] | None]]
Damage = Callable[[Path], object]

# A small vocabulary, so that terms repeat within and across documents; queries also hold unknown terms.
terms = st.sampled_from("abcdefgh")
documents = st.lists(terms, max_size=12)
corpora = st.lists(documents, max_size=25)
queries = st.lists(st.sampled_from("abcdefghxyz"), max_size=6)
deterministic = settings(max_examples=150, deadline=None, derandomize=True, database=None)


@st.composite
def segments(draw: st.DrawFn) -> Parts:
    """A corpus cut into parts, each with a live mask (None: all live)."""
    parts: Parts = []
    for corpus in draw(st.lists(corpora, max_size=4)):
        mask = draw(st.none() | st.lists(st.booleans(), min_size=len(corpus), max_size=len(corpus)))
        parts.append((corpus, mask))
    return parts


def built(parts: Parts) -> list[tuple[Postings, np.ndarray | None]]:
    return [(Postings.build(corpus), None if mask is None else np.array(mask, dtype=bool)) for corpus, mask in parts]


def live_documents(parts: Parts) -> Corpus:
    return [doc for corpus, mask in parts for n, doc in enumerate(corpus) if mask is None or mask[n]]


def assert_same(a: Postings, b: Postings) -> None:
    assert a.terms == b.terms
    for name in ("indptr", "rows", "freqs", "lengths"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


def test_a_tiny_corpus_scores_as_the_formula_says() -> None:
    scores = Bm25([(Postings.build([["a", "b"], ["a"], ["c"]]), None)]).scores(["a"])[0]
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    average = 4 / 3
    expected = [idf / (1 + 1.5 * (0.25 + 0.75 * length / average)) for length in (2, 1)] + [0.0]
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert scores.dtype == np.float32


@deterministic
@given(corpus=corpora, query=queries)
def test_one_segment_scores_as_bm25s(corpus: Corpus, query: list[str]) -> None:
    bm25s = pytest.importorskip("bm25s")
    ours = Bm25([(Postings.build(corpus), None)]).scores(query)[0]
    assert ours.dtype == np.float32 and ours.shape == (len(corpus),)
    if not any(corpus) or not query:  # bm25s cannot index an empty vocabulary, nor score an empty query
        assert not ours.any()
        return
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    np.testing.assert_allclose(ours, retriever.get_scores(query), rtol=1e-6, atol=0)


@deterministic
@given(parts=segments(), query=queries)
def test_segments_with_deletes_score_as_one_segment_of_the_live_documents(parts: Parts, query: list[str]) -> None:
    scores = Bm25(built(parts)).scores(query)
    live = [np.ones(len(c), dtype=bool) if m is None else np.array(m, dtype=bool) for c, m in parts]
    assert [len(s) for s in scores] == [len(c) for c, _ in parts]
    for score, mask in zip(scores, live, strict=True):
        assert np.all(score[~mask] == 0)
    reference = Bm25([(Postings.build(live_documents(parts)), None)])
    ours = np.concatenate([np.zeros(0, dtype=np.float32)] + [s[m] for s, m in zip(scores, live, strict=True)])
    np.testing.assert_allclose(ours, reference.scores(query)[0], rtol=1e-6, atol=1e-6)


@deterministic
@given(parts=segments(), term=st.sampled_from("abcdefghx"))
def test_document_frequency_counts_live_rows_over_all_segments(parts: Parts, term: str) -> None:
    index = Bm25(built(parts))
    live = live_documents(parts)
    assert index.documents == len(live)
    assert index.document_frequency(term) == sum(term in doc for doc in live)


@deterministic
@given(parts=segments())
def test_merge_equals_a_build_of_the_kept_documents(parts: Parts) -> None:
    merged = Postings.merge([(p, np.ones(p.size, dtype=bool) if m is None else m) for p, m in built(parts)])
    assert_same(merged, Postings.build(live_documents(parts)))


@deterministic
@given(corpus=corpora, query=queries)
def test_columns_and_row_masks_match_a_brute_force_scan(corpus: Corpus, query: list[str]) -> None:
    postings = Postings.build(corpus)
    assert postings.size == len(corpus)
    np.testing.assert_array_equal(postings.lengths, [len(doc) for doc in corpus])
    for term in [*"abcdefgh", "x"]:
        rows, freqs = postings.column(term)
        holding = [n for n, doc in enumerate(corpus) if term in doc]
        assert rows.tolist() == holding
        assert freqs.tolist() == [corpus[n].count(term) for n in holding]
    expected = [any(term in doc for term in query) for doc in corpus]
    assert postings.rows_with_any(query).tolist() == expected


@deterministic
@given(corpus=corpora)
def test_save_then_load_gives_the_same_postings(corpus: Corpus) -> None:
    postings = Postings.build(corpus)
    with tempfile.TemporaryDirectory() as directory:
        names = postings.save(Path(directory))
        assert sorted(names) == sorted(p.name for p in Path(directory).iterdir())
        assert_same(Postings.load(Path(directory)), postings)


def test_empty_terms_are_ignored_and_non_ascii_terms_survive_a_round_trip(tmp_path: Path) -> None:
    postings = Postings.build([["", "ä", "ä"], [""], [], ["東京"]])
    assert_same(postings, Postings.build([["ä", "ä"], [], [], ["東京"]]))
    postings.save(tmp_path)
    assert_same(Postings.load(tmp_path), postings)


def test_no_live_document_scores_nothing_and_warns_nothing() -> None:
    postings = Postings.build([["a"], ["a", "b"]])
    index = Bm25([(postings, np.zeros(2, dtype=bool))])
    assert index.documents == 0 and index.document_frequency("a") == 0
    assert not index.scores(["a", "b"])[0].any()
    assert Bm25([]).scores(["a"]) == []


def test_a_mask_of_the_wrong_size_is_refused() -> None:
    postings = Postings.build([["a"], ["b"]])
    with pytest.raises(ValueError, match="shape"):
        Bm25([(postings, np.ones(3, dtype=bool))])
    with pytest.raises(ValueError, match="shape"):
        Postings.merge([(postings, np.ones(1, dtype=bool))])


def _truncate(directory: Path) -> object:
    path = directory / ROWS
    return path.write_bytes(path.read_bytes()[:-4])


def _save(name: str, array: np.ndarray) -> Damage:
    return lambda directory: np.save(directory / name, array, allow_pickle=False)


def _write_terms(value: object) -> Damage:
    return lambda directory: (directory / TERMS).write_text(json.dumps(value), encoding="utf-8")


DAMAGE: dict[str, tuple[Damage, str]] = {
    "truncated rows": (_truncate, "rows.npy cannot be read"),
    "terms not JSON": (lambda directory: (directory / TERMS).write_text("[", encoding="utf-8"), "not JSON"),
    "terms unsorted": (_write_terms(["b", "a", "c"]), "not sorted and unique"),
    "an empty term": (_write_terms(["", "b", "c"]), "non-empty terms"),
    "one term too many": (_write_terms(["a", "b", "c", "d"]), "4 offsets for 4 terms"),
    "indptr not rising": (_save(INDPTR, np.array([0, 3, 2, 5], dtype=np.int64)), "offsets do not rise"),
    "indptr past the postings": (_save(INDPTR, np.array([0, 2, 3, 6], dtype=np.int64)), "offsets do not rise"),
    "a row past the end": (_save(ROWS, np.array([0, 2, 0, 1, 3], dtype=np.int32)), "outside the 3 rows"),
    "rows not ascending": (_save(ROWS, np.array([2, 0, 0, 1, 2], dtype=np.int32)), "not strictly ascending"),
    "rows of another dtype": (_save(ROWS, np.array([0, 2, 0, 1, 2], dtype=np.int64)), "int32 array"),
    "too few frequencies": (_save(FREQS, np.ones(4, dtype=np.float32)), "4 frequencies for 5 postings"),
    "a zero frequency": (_save(FREQS, np.array([1, 0, 1, 1, 1], dtype=np.float32)), "not above 0"),
    "a negative length": (_save(LENGTHS, np.array([2, -1, 2], dtype=np.float32)), "negative"),
    "lengths of two dimensions": (_save(LENGTHS, np.ones((3, 1), dtype=np.float32)), "one-dimensional float32"),
}


@pytest.mark.parametrize(("damage", "message"), DAMAGE.values(), ids=DAMAGE.keys())
def test_load_refuses_damaged_or_inconsistent_files(tmp_path: Path, damage: Damage, message: str) -> None:
    postings = Postings.build([["a", "b"], ["c"], ["a", "c"]])
    assert postings.indptr.tolist() == [0, 2, 3, 5] and postings.rows.tolist() == [0, 2, 0, 1, 2]
    postings.save(tmp_path)
    Postings.load(tmp_path)
    damage(tmp_path)
    with pytest.raises(ValueError, match=message):
        Postings.load(tmp_path)


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    Postings.build([["a"]]).save(tmp_path)
    (tmp_path / FREQS).unlink()
    with pytest.raises(FileNotFoundError):
        Postings.load(tmp_path)
