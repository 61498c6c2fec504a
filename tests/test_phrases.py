"""Exact phrases and exclusions in a search, on the bundled corpus: every hit holds each phrase (in its text or
its title) and no excluded word, in every mode and with filters, still a full page where enough passages
qualify; a query without operators ranks as it always did."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from semsearch.api.app import create_app
from semsearch.index.reading.folding import fold
from semsearch.index.storage.lexical import ANALYZER
from semsearch.params import MODES
from semsearch.search.filters import Filters
from semsearch.search.query_syntax import parse
from semsearch.search.results import Hit
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings

PHRASES = ["press freedom", "human rights", "social media", "belt and road"]
EXCLUDED = ["china", "protest", "government"]


def words(text: str) -> str:
    return " " + " ".join(re.findall(r"\w+", fold(text))) + " "


def holds(hit: Hit, phrase: str) -> bool:
    return words(phrase) in words(hit.text) or words(phrase) in words(hit.title)


def terms(hit: Hit) -> set[str]:
    return set(ANALYZER.terms(hit.text)) | set(ANALYZER.terms(hit.title))


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(
    phrase=st.sampled_from(PHRASES),
    extra=st.sampled_from(["", "journalists", "in Asia", "protests online"]),
    excluded=st.lists(st.sampled_from(EXCLUDED), max_size=2, unique=True),
    mode=st.sampled_from(MODES),
    k=st.sampled_from([5, 10, 30]),
    date_from=st.sampled_from([None, "2012-05-15"]),
)
def test_every_hit_holds_the_phrase_and_no_excluded_word(
    news_searcher: Searcher,
    phrase: str,
    extra: str,
    excluded: list[str],
    mode: str,
    k: int,
    date_from: str | None,
) -> None:
    query = " ".join(x for x in (extra, f'"{phrase}"', *(f"-{w}" for w in excluded)) if x)
    options = news_searcher.defaults.replace(mode=mode, filters=Filters.parse(date_from=date_from))
    hits = news_searcher.search(query, k, options)
    for hit in hits:
        assert holds(hit, phrase), (query, hit.text)
        assert not {ANALYZER.terms(w)[0] for w in excluded} & terms(hit), (query, hit.text)
        assert date_from is None or (hit.date or "") >= date_from
    assert len({h.passage_id for h in hits}) == len(hits)


@pytest.mark.parametrize("mode", MODES)
def test_a_common_phrase_still_fills_the_page(news_searcher: Searcher, mode: str) -> None:
    hits = news_searcher.search('"human rights" activists', 10, news_searcher.defaults.replace(mode=mode))
    assert len(hits) == 10 and all(holds(h, "human rights") for h in hits)


def test_the_phrase_of_the_china_kazakhstan_post_finds_it(news_searcher: Searcher) -> None:
    (hit,) = news_searcher.search('"belt and road"', 10)
    assert hit.article_id == "china-kazakhstan-cooperation.txt"


def test_an_exclusion_removes_what_the_plain_query_found(news_searcher: Searcher) -> None:
    plain = news_searcher.search("energy cooperation", 10)
    assert any("china" in terms(h) for h in plain)
    without = news_searcher.search("energy cooperation -china", 10)
    assert len(without) == 10 and not any("china" in terms(h) for h in without)


@pytest.mark.parametrize("query", ["energy cooperation in Central Asia", "press freedom, Kenya", "e-mail - spam"])
def test_a_query_without_operators_ranks_as_before(news_searcher: Searcher, query: str) -> None:
    """No quote and no leading minus: the text that ranks is the query itself, so nothing changes."""
    assert parse(query).text == query and not parse(query).has_operators
    assert news_searcher.search(query, 10) == news_searcher.search_many([query, "another question"], 10)[0]


@pytest.mark.parametrize("query", ['energy "cooperation', '"', "-china", '""', 'a "b" "c'])
def test_a_malformed_or_bare_query_is_read_literally(news_searcher: Searcher, query: str) -> None:
    for mode in MODES:
        news_searcher.search(query, 10, news_searcher.defaults.replace(mode=mode))  # never an error


@pytest.fixture(scope="module")
def client(news_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(news_settings)) as test_client:
        yield test_client


def test_http_phrases_and_exclusions(client: TestClient, news_searcher: Searcher) -> None:
    query = '"press freedom" -kenya'
    got = client.get("/search", params={"q": query, "facets": "source"}).json()
    assert got["hits"] and [h["passage_id"] for h in got["hits"]] == [
        h.passage_id for h in news_searcher.search(query, 10)
    ]
    for hit in got["hits"]:
        assert "press freedom" in words(hit["text"]) + words(hit["title"])
        assert "kenya" not in set(ANALYZER.terms(hit["text"])) | set(ANALYZER.terms(hit["title"]))
        marked = {hit["text"][a:b].lower() for a, b in hit["highlights"]}
        assert "kenya" not in marked
    counted = news_searcher.facets(query, ("source",), 10)
    assert got["facets"]["articles"] == counted.articles
