"""`offset` and `sort`: later pages of a query continue its ranking, and `sort=date` orders the same hits newest
first, on the bundled corpus over the Python API, HTTP and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from semsearch.api.app import create_app
from semsearch.api.cli import ask
from semsearch.engine import Engine
from semsearch.index.model.embedder import Embedder
from semsearch.params import MODES
from semsearch.search.filters import Filters
from semsearch.search.paging import MIN_CANDIDATES, candidate_depth, newest_first
from semsearch.search.results import Hit
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings

QUESTION = "energy cooperation in Central Asia"


def ids(hits: list[Hit]) -> list[int]:
    return [h.passage_id for h in hits]


def test_the_depth_grows_in_blocks_of_fifty() -> None:
    assert [candidate_depth(n) for n in (1, 10, 50)] == [MIN_CANDIDATES] * 3
    assert [candidate_depth(n) for n in (51, 100, 101, 1100)] == [200, 200, 300, 2200]


def test_newest_first_keeps_relevance_among_equal_dates_and_puts_undated_last() -> None:
    ranked = ["a", "b", "c", "d", "e"]
    dates = {0: None, 1: "2012-01-01", 2: "2013-05-01", 3: "2012-01-01", 4: ""}
    assert newest_first(ranked, dates) == ["c", "b", "d", "a", "e"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fusion", ["weighted", "rrf"])
def test_three_pages_are_the_top_thirty(news_searcher: Searcher, mode: str, fusion: str) -> None:
    options = news_searcher.defaults.replace(mode=mode, fusion=fusion)
    top = news_searcher.search(QUESTION, 30, options)
    assert len(top) == 30
    pages = [news_searcher.search(QUESTION, 10, options.replace(offset=offset)) for offset in (0, 10, 20)]
    joined = [hit for page in pages for hit in page]
    assert ids(joined) == ids(top)
    assert [h.rank for h in joined] == list(range(1, 31)) == [h.rank for h in top]
    assert len(set(ids(joined))) == 30


@pytest.mark.parametrize("mode", MODES)
def test_pages_across_a_block_boundary_continue_the_ranking(news_searcher: Searcher, mode: str) -> None:
    """Hits 41-50 rank among 100 candidates, 51-60 among 200: the deeper page still starts where the other ended."""
    options = news_searcher.defaults.replace(mode=mode)
    top = news_searcher.search(QUESTION, 70, options)
    pages = [news_searcher.search(QUESTION, 10, options.replace(offset=offset)) for offset in (0, 40, 50, 60)]
    assert ids(pages[0]) == ids(top[:10])
    assert ids(pages[1] + pages[2] + pages[3]) == ids(top[40:70])
    assert ids(news_searcher.search(QUESTION, 50, options)) == ids(top[:50])


def test_a_page_past_the_last_hit_is_empty(news_searcher: Searcher) -> None:
    only = Filters.parse(article_id="china-kazakhstan-cooperation.txt")
    options = news_searcher.defaults.replace(mode="lexical", per_article=0, filters=only)
    everything = news_searcher.search("China", 100, options)
    assert everything and news_searcher.search("China", 10, options.replace(offset=len(everything))) == []


def test_pages_beyond_k_max_reach_a_thousand_deep(news_searcher: Searcher) -> None:
    options = news_searcher.defaults.replace(per_article=0, duplicate_threshold=2.0)
    deep = news_searcher.search("China", 100, options.replace(offset=1000))
    assert deep and deep[0].rank == 1001
    before = news_searcher.search("China", 100, options.replace(offset=900))
    assert not set(ids(deep)) & set(ids(before))


def dated(hits: list[Hit]) -> None:
    """Newest first by the stored date, undated hits after every dated one."""
    dates = [h.date for h in hits]
    known = [d for d in dates if d]
    assert known == sorted(known, reverse=True)
    assert dates == known + [None] * (len(dates) - len(known))


@pytest.mark.parametrize("mode", MODES)
def test_date_order_follows_the_stored_dates(news_searcher: Searcher, mode: str) -> None:
    options = news_searcher.defaults.replace(mode=mode, sort="date")
    hits = news_searcher.search(QUESTION, 50, options)
    assert len(hits) == 50 and len({h.date for h in hits}) > 5
    dated(hits)
    stored = news_searcher.index.passages(ids(hits))
    assert [h.date for h in hits] == [stored[h.passage_id].date for h in hits]
    pages = [news_searcher.search(QUESTION, 10, options.replace(offset=offset)) for offset in (0, 10, 20)]
    assert ids([h for page in pages for h in page]) == ids(hits[:30])


def test_date_order_keeps_the_filters_and_the_cap(news_searcher: Searcher) -> None:
    filters = Filters.parse(date_from="2012-01-01", date_to="2012-12-31")
    options = news_searcher.defaults.replace(sort="date", per_article=1, filters=filters)
    hits = news_searcher.search(QUESTION, 40, options)
    assert hits
    dated(hits)
    assert all(h.date and "2012-01-01" <= h.date[:10] <= "2012-12-31" for h in hits)
    assert len({h.article_id for h in hits}) == len(hits)


def test_date_order_ranks_the_passages_relevance_finds(news_searcher: Searcher) -> None:
    """With fewer matches than the candidate depth, both orders hold exactly the matching passages."""
    options = news_searcher.defaults.replace(mode="lexical", per_article=0)
    relevant = news_searcher.search("Kazakhstan", 100, options)
    assert 0 < len(relevant) < 100
    by_date = news_searcher.search("Kazakhstan", 100, options.replace(sort="date"))
    assert sorted(ids(by_date)) == sorted(ids(relevant)) and ids(by_date) != ids(relevant)
    dated(by_date)
    undated = [h.article_id for h in by_date if h.date is None]  # the China-Kazakhstan article has no date
    assert "china-kazakhstan-cooperation.txt" in undated and by_date[-1].date is None


@pytest.fixture(scope="module")
def client(news_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(news_settings)) as test_client:
        yield test_client


def test_http_pages_and_sort(client: TestClient, news_searcher: Searcher) -> None:
    top = client.get("/search", params={"q": QUESTION, "k": 20}).json()["hits"]
    second = client.get("/search", params={"q": QUESTION, "k": 10, "offset": 10}).json()["hits"]
    posted = client.post("/search", json={"query": QUESTION, "k": 10, "offset": 10}).json()["hits"]
    assert second == posted == top[10:] and second[0]["rank"] == 11
    by_date = client.post("/search", json={"query": QUESTION, "k": 20, "sort": "date"}).json()["hits"]
    expected = news_searcher.search(QUESTION, 20, news_searcher.defaults.replace(sort="date"))
    assert [h["passage_id"] for h in by_date] == ids(expected)


@pytest.mark.parametrize(("name", "value"), [("offset", -1), ("offset", 1001), ("sort", "foo")])
def test_http_refuses_bad_values(client: TestClient, name: str, value: object) -> None:
    for response in (
        client.get("/search", params={"q": QUESTION, name: value}),
        client.post("/search", json={"query": QUESTION, name: value}),
    ):
        assert response.status_code == 422, response.text
        assert name in response.json()["error"]["message"]


@pytest.mark.parametrize(("flag", "value"), [("--offset", "-1"), ("--offset", "1001"), ("--sort", "foo")])
def test_ask_refuses_bad_values(tmp_path: Path, flag: str, value: str) -> None:
    result = CliRunner().invoke(ask, [QUESTION, "--index", str(tmp_path), flag, value])
    assert result.exit_code == 2 and f"Invalid value for '{flag}'" in result.output


def test_ask_pages(news_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMSEARCH_BACKEND", news_settings.backend)
    base = [QUESTION, "--index", str(news_settings.index), "--json", "-k", "5"]
    first = CliRunner().invoke(ask, [*base, "--offset", "0"])
    second = CliRunner().invoke(ask, [*base, "--offset", "5", "--sort", "relevance"])
    both = CliRunner().invoke(ask, [*base[:-1], "10"])
    assert first.exit_code == second.exit_code == both.exit_code == 0, first.output
    import json

    assert json.loads(first.output) + json.loads(second.output) == json.loads(both.output)
    by_date = CliRunner().invoke(ask, [*base, "--sort", "date"])
    assert by_date.exit_code == 0
    dates = [h["date"] for h in json.loads(by_date.output)]
    assert dates == sorted(dates, reverse=True)


def test_engine_pages_and_sort(news_settings: Settings, embedder: Embedder, news_searcher: Searcher) -> None:
    engine = Engine(news_settings)
    try:
        assert ids(engine.search(QUESTION, 10, offset=10)) == ids(news_searcher.search(QUESTION, 20))[10:]
        expected = news_searcher.search(QUESTION, 10, news_searcher.defaults.replace(sort="date", offset=5))
        assert ids(engine.search(QUESTION, 10, offset=5, sort="date")) == ids(expected)
        import semsearch

        for bad in ({"offset": -1}, {"offset": 1001}, {"sort": "foo"}):
            with pytest.raises(semsearch.InvalidSearchError, match=next(iter(bad))):
                engine.search(QUESTION, 10, **bad)  # type: ignore[arg-type]
    finally:
        engine.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("query", ["china", '"human rights" -china', "press freedom -kenya"])
def test_pages_stay_full_and_continue_where_the_cap_and_phrases_thin_the_candidates(
    news_searcher: Searcher, mode: str, query: str
) -> None:
    """With one passage per article, the top 100 candidates of a block give fewer than 50 hits: a page then takes
    deeper candidates instead of coming back short, and the pages are still the top of one deep request."""
    options = news_searcher.defaults.replace(mode=mode, per_article=1)
    top = news_searcher.search(query, 100, options)
    pages = [news_searcher.search(query, 10, options.replace(offset=offset)) for offset in range(0, 150, 10)]
    joined = [hit for page in pages for hit in page]
    assert len({h.passage_id for h in joined}) == len(joined)  # no hit twice
    assert ids(joined[:100]) == ids(top)
    assert [h.rank for h in joined] == list(range(1, len(joined) + 1))
    sizes = [len(page) for page in pages]
    short = [n for n, size in enumerate(sizes) if size < 10]
    assert all(size == 0 for size in sizes[short[0] + 1 :]) if short else True  # after a short page, nothing
