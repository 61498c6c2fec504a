"""Golden queries on the bundled corpus: paraphrased questions must find the article they were written for."""

from __future__ import annotations

import pytest

from search.searcher import Searcher

CHINA_KAZAKHSTAN = "china-kazakhstan-cooperation.txt"

# (question, acceptable article ids); none of the questions copies its post's title.
GOLDEN = [
    ("when will Lesotho vote in its national elections", {"gv-322227"}),
    ("bloggers rally after a married pair of reporters was killed", {"gv-321945"}),
    ("officers beating a detained migrant caught on video in Athens", {"gv-317627"}),
    ("should Kenyan companies give interns a salary", {"gv-321228", "gv-321230"}),
    ("Malawi leader wants to repeal the law against gay people", {"gv-322665"}),
    ("British envoy in Beirut to hold a Twitter conversation with a pop star", {"gv-322499"}),
    ("Mexican novelist dies and people pay tribute online", {"gv-321895"}),
    ("artwork showing the president's private parts sparks a debate about free expression", {"gv-323082"}),
    ("International Workers' Day rallies across Arab countries", {"gv-316713"}),
    ("Israeli opposition leader joins the coalition government", {"gv-319509"}),
    ("Brazilian senate passes a new forest law and bloggers respond", {"gv-318111"}),
    ("jailed former prime minister and the European football championship", {"gv-317866"}),
]


def test_example_question_finds_the_china_kazakhstan_article(news_searcher: Searcher) -> None:
    hits = news_searcher.search("energy cooperation in Central Asia", k=5)
    assert hits[0].article_id == CHINA_KAZAKHSTAN
    assert "energy" in hits[0].text.lower() or "energy" in hits[0].title.lower()


@pytest.mark.parametrize(("question", "expected"), GOLDEN, ids=[q for q, _ in GOLDEN])
def test_paraphrased_question_finds_its_post_in_top_3(news_searcher: Searcher, question: str, expected: set[str]) -> None:
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
