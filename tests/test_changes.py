"""Planning a write: which articles change, which passages keep their id and vector (pure functions)."""

from __future__ import annotations

import pytest

from semsearch.errors import ArticleNotFoundError, InvalidArticleError
from semsearch.index.reading.articles import Article, Passage, StoredPassage
from semsearch.index.writing.changes import assign_ids, plan_changes


def art(id_: str, body: str = "text") -> Article:
    return Article(id=id_, title=id_.upper(), body=body)


def stored_passage(pid: int, article: str, ordinal: int, digest: str) -> StoredPassage:
    return StoredPassage(pid, Passage(article, ordinal, 0, 1, "x"), digest)


def test_plan_sorts_articles_by_fate_and_keeps_stored_order() -> None:
    stored = [art("a"), art("b"), art("c")]
    plan = plan_changes(stored, [art("b"), art("c", "new text"), art("d")], deletes=["a"])
    assert (plan.added, plan.updated, plan.removed, plan.unchanged) == (["d"], ["c"], ["a"], ["b"])
    assert [a.id for a in plan.articles] == ["b", "c", "d"]
    assert plan.articles[1].body == "new text"
    assert plan.to_split == {"c", "d"}


def test_prune_removes_what_is_not_given_and_nothing_changed_is_no_change() -> None:
    stored = [art("a"), art("b")]
    assert plan_changes(stored, [art("b")], prune=True).removed == ["a"]
    assert not plan_changes(stored, [art("a"), art("b")]).changes_anything


def test_bad_writes_are_refused() -> None:
    with pytest.raises(InvalidArticleError, match="twice"):
        plan_changes([], [art("a"), art("a")])
    with pytest.raises(ArticleNotFoundError, match="'zz'"):
        plan_changes([art("a")], [], deletes=["zz"])
    with pytest.raises(InvalidArticleError, match="both"):
        plan_changes([art("a")], [art("a", "x")], deletes=["a"])


def test_ids_are_stable_and_vectors_reused_by_text() -> None:
    stored = [
        stored_passage(0, "a", 0, "h-a0"),
        stored_passage(1, "a", 1, "h-a1"),
        stored_passage(2, "b", 0, "h-b0"),
        stored_passage(3, "b", 1, "h-b1"),
    ]
    plan = plan_changes([art("a"), art("b")], [art("b", "changed"), art("c")])
    fresh = {
        # b keeps its first paragraph, loses its second, gains one; c repeats a text of a and one twice.
        "b": [(Passage("b", 0, 0, 1, "x"), "h-b0"), (Passage("b", 1, 0, 1, "y"), "h-new")],
        "c": [(Passage("c", 0, 0, 1, "z"), "h-a1"), (Passage("c", 1, 0, 1, "w"), "h-new")],
    }
    donors = {s.embed_hash: s.id for s in stored}
    got = assign_ids(plan, stored, donors, fresh, next_passage_id=10)
    assert [(s.id, s.passage.article_id, s.embed_hash) for s in got.passages] == [
        (0, "a", "h-a0"),
        (1, "a", "h-a1"),
        (2, "b", "h-b0"),
        (10, "b", "h-new"),
        (11, "c", "h-a1"),
        (12, "c", "h-new"),
    ]
    assert got.to_embed == [10]
    assert got.copy_of == {12: 10}
    assert got.reuse_from == {0: 0, 1: 1, 2: 2, 11: 1}
    assert got.next_passage_id == 13  # id 3 is gone for good


def test_a_rebuild_numbers_from_zero_but_still_reuses_vectors() -> None:
    plan = plan_changes([], [art("a")])
    fresh = {"a": [(Passage("a", 0, 0, 1, "x"), "h-old"), (Passage("a", 1, 0, 1, "y"), "h-other")]}
    got = assign_ids(plan, [], {"h-old": 7}, fresh, next_passage_id=0)
    assert [s.id for s in got.passages] == [0, 1]
    assert got.reuse_from == {0: 7} and got.to_embed == [1]
