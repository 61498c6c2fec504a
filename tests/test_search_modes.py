"""Retrieval modes, filters, per-article caps, duplicate folding and highlights on real indexes."""

from __future__ import annotations

from pathlib import Path

import pytest

from semsearch.index.model.embedder import Embedder
from semsearch.index.writing.builder import build_index
from semsearch.search.filters import Filters
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings
from tests.helpers import write_corpus

CK = "china-kazakhstan-cooperation.txt"
QUESTION = "energy cooperation in Central Asia"


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_every_mode_finds_the_example_article(news_searcher: Searcher, mode: str) -> None:
    hits = news_searcher.search(QUESTION, 5, news_searcher.defaults.replace(mode=mode))
    assert CK in {h.article_id for h in hits[:3]}, [(h.article_id, h.score) for h in hits]
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_lexical_mode_needs_a_known_word(news_searcher: Searcher) -> None:
    lexical = news_searcher.defaults.replace(mode="lexical")
    assert news_searcher.search("qwxzv plorkt", 5, lexical) == []
    assert news_searcher.search("qwxzv plorkt", 5) != []  # hybrid still has its dense half


def test_the_cap_limits_passages_per_article_and_zero_lifts_it(news_searcher: Searcher) -> None:
    uncapped = news_searcher.search(QUESTION, 10, news_searcher.defaults.replace(per_article=0))
    counts = [h.article_id for h in uncapped].count(CK)
    assert counts > 2  # the China-Kazakhstan article dominates when nothing holds it back
    for cap in (1, 2):
        hits = news_searcher.search(QUESTION, 10, news_searcher.defaults.replace(per_article=cap))
        assert len(hits) == 10
        per = {a: [h.article_id for h in hits].count(a) for a in {h.article_id for h in hits}}
        assert max(per.values()) <= cap
        # A passage of the uncapped list that is gone belongs to an article at its cap, and stays reachable.
        for dropped in [h for h in uncapped if h.passage_id not in {x.passage_id for x in hits}]:
            if dropped.score > hits[-1].score:
                assert per.get(dropped.article_id) == cap
                article = news_searcher.article(dropped.article_id)
                assert article is not None and dropped.passage_id in {pid for pid, _ in article.passages}


def test_hits_mark_the_query_words_they_contain(news_searcher: Searcher) -> None:
    hit = news_searcher.search(QUESTION, 3)[0]
    marked = [hit.text[s:e].lower() for s, e in hit.highlights]
    assert marked and set(marked) <= {"energy", "energies", "cooperation", "central", "asia", "asian"}
    assert all(hit.text[s - 1 : s].isalnum() is False for s, _ in hit.highlights if s > 0)


@pytest.mark.parametrize(
    ("mode", "question"),
    [
        ("dense", "mobile phones and the internet"),
        ("hybrid", "mobile phones and the internet"),
        ("lexical", "what do bloggers say about the government"),  # BM25 needs passages with its words
    ],
)
def test_a_filter_matching_one_percent_still_fills_k(news_searcher: Searcher, mode: str, question: str) -> None:
    allowed = news_searcher.index.matching_passages(date_from="2004-10-01", date_to="2004-11-30")
    assert allowed.sum() >= 10 and allowed.mean() <= 0.01, (int(allowed.sum()), float(allowed.mean()))
    options = news_searcher.defaults.replace(
        mode=mode, per_article=0, filters=Filters.parse("2004-10-01", "2004-11-30")
    )
    hits = news_searcher.search(question, 10, options)
    assert len(hits) == 10
    assert all(h.date is not None and "2004-10-01" <= h.date[:10] <= "2004-11-30" for h in hits)
    unfiltered = news_searcher.search(question, 100, options.replace(filters=Filters()))
    in_range = [h for h in unfiltered if h.date and "2004-10-01" <= h.date[:10] <= "2004-11-30"]
    assert len(in_range) < 10  # filtering the top 100 afterwards would not have filled k


def test_source_and_article_filters(news_searcher: Searcher) -> None:
    only_gv = news_searcher.defaults.replace(filters=Filters.parse(source="global voices (globalvoicesonline.org)"))
    assert CK not in {h.article_id for h in news_searcher.search(QUESTION, 10, only_gv)}
    one = news_searcher.defaults.replace(per_article=0, filters=Filters.parse(article_id=CK))
    hits = news_searcher.search("pipelines", 5, one)
    assert hits and {h.article_id for h in hits} == {CK}
    nothing = news_searcher.defaults.replace(filters=Filters.parse(source="No Such Source"))
    assert news_searcher.search(QUESTION, 5, nothing) == []


def test_the_same_wire_story_in_two_outlets_is_one_hit(tmp_path: Path, embedder: Embedder) -> None:
    wire = (
        "Astana, May 3 (Wire). Kazakhstan and China signed an agreement on Friday to build a second gas "
        "pipeline across the steppe, officials in both capitals said, adding that construction would begin "
        "next spring and take three years."
    )
    own_a = "Our correspondent in Almaty reports that farmers near the planned route worry about land rights " * 2
    own_b = "Markets in Shanghai reacted calmly, and analysts expect the price of gas in the region to fall " * 2
    other = "Bloggers in Nairobi discussed press freedom at a long meeting on Monday, with lawyers and editors " * 2
    corpus = write_corpus(
        tmp_path / "news",
        {
            "outlet-a.txt": f"Pipeline deal signed\n\n{wire}\n\n{own_a}",
            "outlet-b.txt": f"Kazakhstan, China agree pipeline\n\n{wire}\n\n{own_b}",
            "other.txt": f"Kenyan bloggers\n\n{other}",
        },
    )
    settings = Settings(index=tmp_path / "index")
    build_index([corpus], settings, embedder=embedder)
    searcher = Searcher.open(settings, embedder)
    try:
        hits = searcher.search("gas pipeline agreement between Kazakhstan and China", 3)
        folded = [h for h in hits if h.duplicates]
        assert len(folded) == 1
        assert {folded[0].article_id, *folded[0].duplicates} == {"outlet-a.txt", "outlet-b.txt"}
        assert sum(h.text.startswith("Astana") for h in hits) == 1
        off = searcher.defaults.replace(duplicate_threshold=1.5)
        assert sum(h.text.startswith("Astana") for h in searcher.search("gas pipeline agreement", 3, off)) == 2
    finally:
        searcher.close()
