"""Golden queries on the bundled corpus: paraphrased questions must find the article they were written for."""

from __future__ import annotations

import pytest

from semsearch.benchmarks.golden import GOLDEN
from semsearch.search.searcher import Searcher

CHINA_KAZAKHSTAN = "china-kazakhstan-cooperation.txt"


def test_example_question_finds_the_china_kazakhstan_article(news_searcher: Searcher) -> None:
    hits = news_searcher.search("energy cooperation in Central Asia", k=5)
    assert hits[0].article_id == CHINA_KAZAKHSTAN, [(h.article_id, h.title) for h in hits]


@pytest.mark.parametrize(("question", "expected"), GOLDEN, ids=[q for q, _ in GOLDEN])
def test_paraphrased_question_finds_its_post_in_top_3(
    news_searcher: Searcher, question: str, expected: frozenset[str]
) -> None:
    hits = news_searcher.search(question, k=3)
    assert expected & {h.article_id for h in hits}, [(h.article_id, h.title) for h in hits]


def test_hits_carry_article_fields(news_searcher: Searcher) -> None:
    hit = next(h for h in news_searcher.search("Lesotho general elections", k=10) if h.article_id == "gv-322227")
    assert hit.title == "Lesotho: 2012 General Election Date Set"
    assert hit.date is not None and hit.date.startswith("2012-05")
    assert hit.source and hit.url and hit.url.startswith("http")
    article = news_searcher.article(hit.article_id)
    assert article is not None
    assert article.body[hit.offsets[0] : hit.offsets[1]] == hit.text
    assert hit.passage_id in [pid for pid, _ in article.passages]
