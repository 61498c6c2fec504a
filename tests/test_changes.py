"""Planning a write: which articles change and which passages keep their id (pure functions).

Which stored vector a passage reuses is decided by the builder from the embedded-text hash
(`CommitView.vectors_by_hash`); `test_updates.py` checks that on a real index.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semsearch.errors import ArticleNotFoundError, InvalidArticleError
from semsearch.index.reading.articles import Article, Passage, StoredPassage
from semsearch.index.writing.changes import assign_ids, plan_changes


def art(id_: str, body: str = "text") -> Article:
    return Article(id=id_, title=id_.upper(), body=body)


def hashes(*articles: Article) -> dict[str, str]:
    """What a commit says of its stored articles: id -> content hash."""
    return {a.id: a.content_hash() for a in articles}


def stored_passage(pid: int, article: str, ordinal: int, digest: str) -> StoredPassage:
    return StoredPassage(pid, Passage(article, ordinal, 0, 1, "x"), digest)


def test_plan_sorts_articles_by_fate_and_the_segment_holds_only_what_changed() -> None:
    stored = hashes(art("a"), art("b"), art("c"), art("e"))
    plan = plan_changes(stored, [art("d"), art("b"), art("c", "new text")], deletes=["a"])
    assert (plan.added, plan.updated, plan.removed, plan.unchanged) == (["d"], ["c"], ["a"], ["b"])
    # The new segment holds the added and updated articles, in the order given; "b" and "e" stay where they are.
    assert [a.id for a in plan.articles] == ["d", "c"]
    assert plan.articles[1].body == "new text"
    assert plan.replaced == ["c", "a"]  # tombstoned in their old segments
    assert plan.changes_anything


def test_prune_removes_what_is_not_given_and_nothing_changed_is_no_change() -> None:
    stored = hashes(art("a"), art("b"))
    pruned = plan_changes(stored, [art("b")], prune=True)
    assert pruned.removed == ["a"] and pruned.unchanged == ["b"] and pruned.articles == []
    assert pruned.replaced == ["a"]
    same = plan_changes(stored, [art("a"), art("b")])
    assert not same.changes_anything and same.articles == [] and same.replaced == []
    # Without prune an article not given is left alone.
    assert not plan_changes(stored, [art("b")]).changes_anything


def test_bad_writes_are_refused() -> None:
    with pytest.raises(InvalidArticleError, match="twice"):
        plan_changes({}, [art("a"), art("a")])
    with pytest.raises(ArticleNotFoundError, match="'zz'"):
        plan_changes(hashes(art("a")), [], deletes=["zz"])
    with pytest.raises(InvalidArticleError, match="both"):
        plan_changes(hashes(art("a")), [art("a", "x")], deletes=["a"])


def test_a_replaced_article_keeps_the_ids_of_its_unchanged_texts() -> None:
    old = {
        "b": [stored_passage(2, "b", 0, "h-b0"), stored_passage(3, "b", 1, "h-b1"), stored_passage(4, "b", 2, "h-b0")],
    }
    fresh = [
        # b keeps its first paragraph (twice, as before), loses its second, gains one; c is new and repeats a
        # text of b, which gives it no claim on b's ids.
        ("b", [(Passage("b", 0, 0, 1, "x"), "h-b0"), (Passage("b", 1, 0, 1, "y"), "h-new"),
               (Passage("b", 2, 0, 1, "x"), "h-b0"), (Passage("b", 3, 0, 1, "x"), "h-b0")]),
        ("c", [(Passage("c", 0, 0, 1, "z"), "h-b1"), (Passage("c", 1, 0, 1, "w"), "h-new")]),
    ]  # fmt: skip
    passages, next_id = assign_ids(fresh, old, next_passage_id=10)
    assert [(s.id, s.passage.article_id, s.passage.ordinal, s.embed_hash) for s in passages] == [
        (2, "b", 0, "h-b0"),
        (10, "b", 1, "h-new"),
        (4, "b", 2, "h-b0"),
        (11, "b", 3, "h-b0"),  # a third copy of a text stored twice gets a new id
        (12, "c", 0, "h-b1"),
        (13, "c", 1, "h-new"),
    ]
    assert next_id == 14  # id 3 is gone for good, and no id below 10 is handed out anew


def test_a_rebuild_numbers_from_zero() -> None:
    fresh = [("a", [(Passage("a", 0, 0, 1, "x"), "h-old"), (Passage("a", 1, 0, 1, "y"), "h-other")])]
    passages, next_id = assign_ids(fresh, {}, next_passage_id=0)
    assert [s.id for s in passages] == [0, 1] and next_id == 2
    assert [s.embed_hash for s in passages] == ["h-old", "h-other"]


ids = st.sampled_from("abcdefgh")
bodies = st.sampled_from(["one", "two", "three"])


@given(
    stored=st.dictionaries(ids, bodies, max_size=8),
    given_=st.dictionaries(ids, bodies, max_size=8),
    delete_some=st.sets(ids),
    prune=st.booleans(),
)
def test_every_article_has_exactly_one_fate(
    stored: dict[str, str], given_: dict[str, str], delete_some: set[str], prune: bool
) -> None:
    deletes = sorted(delete_some & set(stored) - set(given_))
    upserts = [art(i, body) for i, body in given_.items()]
    plan = plan_changes(hashes(*(art(i, b) for i, b in stored.items())), upserts, deletes, prune)
    fates = [*plan.added, *plan.updated, *plan.removed, *plan.unchanged]
    assert len(fates) == len(set(fates))
    assert set(fates) == set(given_) | set(deletes) | (set(stored) if prune else set())
    assert set(plan.added) == set(given_) - set(stored)
    assert set(plan.updated) == {i for i in given_ if i in stored and stored[i] != given_[i]}
    assert set(plan.removed) == set(deletes) | ((set(stored) - set(given_)) if prune else set())
    assert [a.id for a in plan.articles] == [i for i in given_ if i in {*plan.added, *plan.updated}]
    assert plan.replaced == [*plan.updated, *plan.removed]
    assert plan.changes_anything == bool(plan.articles or plan.removed)


texts = st.lists(st.sampled_from(["h1", "h2", "h3", "h4"]), max_size=6)


@given(
    old_texts=st.dictionaries(ids, texts, max_size=4),
    new_texts=st.dictionaries(ids, texts, max_size=4),
    start=st.integers(0, 5),
)
def test_ids_are_unique_stable_by_text_and_new_ones_never_used_before(
    old_texts: dict[str, list[str]], new_texts: dict[str, list[str]], start: int
) -> None:
    old: dict[str, list[StoredPassage]] = {}
    pid = 0
    for article_id, digests in old_texts.items():
        old[article_id] = [stored_passage(pid + n, article_id, n, d) for n, d in enumerate(digests)]
        pid += len(digests)
    next_passage_id = pid + start
    fresh = [(a, [(Passage(a, n, 0, 1, "x"), d) for n, d in enumerate(ds)]) for a, ds in new_texts.items()]
    passages, next_id = assign_ids(fresh, old, next_passage_id)
    assert [(s.passage, s.embed_hash) for s in passages] == [pair for _, pairs in fresh for pair in pairs]
    got = [s.id for s in passages]
    assert len(got) == len(set(got))
    new = [i for i in got if i >= next_passage_id]
    assert new == list(range(next_passage_id, next_id))  # handed out in order, none skipped
    old_ids = {s.id: s for stored in old.values() for s in stored}
    for s in passages:
        if s.id < next_passage_id:  # a kept id: the same article's, for the same text
            kept = old_ids[s.id]
            assert (kept.passage.article_id, kept.embed_hash) == (s.passage.article_id, s.embed_hash)
    for article_id, pairs in fresh:
        for digest in {d for _, d in pairs}:
            stored_n = sum(1 for s in old.get(article_id, ()) if s.embed_hash == digest)
            written_n = sum(1 for _, d in pairs if d == digest)
            kept_n = sum(1 for s in passages if s.passage.article_id == article_id and s.embed_hash == digest
                         and s.id < next_passage_id)  # fmt: skip
            assert kept_n == min(stored_n, written_n)  # every id that could be kept is kept
