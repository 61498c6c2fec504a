"""Facets: counts of the matching articles (those of the passages a search ranks) per source and per month,
equal to a direct count over the same candidate set, over the Python API, HTTP and the CLI."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

import semsearch
from semsearch.api.app import create_app
from semsearch.api.cli import ask
from semsearch.engine import Engine
from semsearch.index.model.embedder import Embedder
from semsearch.index.reading.folding import fold
from semsearch.index.storage.lexical import ANALYZER
from semsearch.index.writing.builder import build_index
from semsearch.params import MODES
from semsearch.search.facets import Facets, parse_fields
from semsearch.search.filters import Filters
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS, jsonl, write_corpus

QUESTION = "energy cooperation in Central Asia"
QUESTIONS = [QUESTION, "press freedom and journalists", "floods in Pakistan", "elections", '"human rights" -china']


def direct(searcher: Searcher, query: str, k: int, options: object) -> tuple[int, Counter[str], Counter[str]]:
    """Articles of the candidate passages, counted from their stored rows."""
    ids = searcher.candidates(query, k, options)  # type: ignore[arg-type]
    rows = searcher.index.passages(ids.tolist())
    articles = {row.article_id: row for row in rows.values()}
    sources = Counter(fold(r.source.strip()) for r in articles.values() if r.source and r.source.strip())
    months = Counter(r.date[:7] for r in articles.values() if r.date)
    return len(articles), sources, months


def check(found: Facets, expected: tuple[int, Counter[str], Counter[str]]) -> None:
    articles, sources, months = expected
    assert found.articles == articles
    assert found.source is not None and found.month is not None
    assert {fold(v.value): v.count for v in found.source} == dict(sources)
    assert {v.value: v.count for v in found.month} == dict(months)
    assert [v.count for v in found.source] == sorted((v.count for v in found.source), reverse=True)
    assert [v.value for v in found.month] == sorted((v.value for v in found.month), reverse=True)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(
    query=st.sampled_from(QUESTIONS),
    mode=st.sampled_from(MODES),
    k=st.integers(1, 100),
    offset=st.sampled_from([0, 10, 60]),
    date_from=st.sampled_from([None, "2012-05-10", "2012-05-20"]),
)
def test_counts_equal_a_direct_count_over_the_candidates(
    news_searcher: Searcher, query: str, mode: str, k: int, offset: int, date_from: str | None
) -> None:
    options = news_searcher.defaults.replace(mode=mode, offset=offset, filters=Filters.parse(date_from=date_from))
    found = news_searcher.facets(query, ("source", "month"), k, options)
    check(found, direct(news_searcher, query, k, options))
    if date_from:
        assert found.month is not None and all(v.value >= date_from[:7] for v in found.month)
    hits = news_searcher.search(query, k, options)
    assert {h.passage_id for h in hits} <= set(news_searcher.candidates(query, k, options).tolist())


def test_a_source_filter_leaves_one_source(news_searcher: Searcher) -> None:
    source = "Global Voices (globalvoicesonline.org)"
    options = news_searcher.defaults.replace(filters=Filters.parse(source=source.upper()))
    found = news_searcher.facets(QUESTION, ("source",), 10, options)
    assert found.source is not None and [v.value for v in found.source] == [source]
    assert found.month is None  # not asked for


def test_fields_parse_in_order_without_repeats() -> None:
    assert parse_fields("month,source") == ("month", "source")
    assert parse_fields("source,source") == ("source",)
    assert parse_fields(None) == () == parse_fields("")


@pytest.fixture(scope="module")
def client(news_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(news_settings)) as test_client:
        yield test_client


def test_http_returns_facets_only_when_asked(client: TestClient, news_searcher: Searcher) -> None:
    plain = client.get("/search", params={"q": QUESTION}).json()
    assert "facets" not in plain
    got = client.get("/search", params={"q": QUESTION, "facets": "source,month"}).json()
    posted = client.post("/search", json={"query": QUESTION, "facets": "source,month"}).json()
    assert got["facets"] == posted["facets"] and got["hits"] == plain["hits"]
    expected = news_searcher.facets(QUESTION, ("source", "month"), 10)
    assert got["facets"]["articles"] == expected.articles
    assert got["facets"]["month"] == [{"value": v.value, "count": v.count} for v in expected.month or []]
    only = client.get("/search", params={"q": QUESTION, "facets": "month"}).json()["facets"]
    assert only["source"] is None and only["month"] == got["facets"]["month"]


@pytest.mark.parametrize("value", ["author", "source,", "source;month", "SOURCE", " source"])
def test_http_refuses_unknown_fields(client: TestClient, value: str) -> None:
    for response in (
        client.get("/search", params={"q": QUESTION, "facets": value}),
        client.post("/search", json={"query": QUESTION, "facets": value}),
    ):
        assert response.status_code == 422 and "facets" in response.json()["error"]["message"], response.text


def test_ask_and_engine_count_alike(news_settings: Settings, news_searcher: Searcher) -> None:
    expected = news_searcher.facets(QUESTION, ("source", "month"), 10)
    env = {"SEMSEARCH_BACKEND": news_settings.backend}
    base = [QUESTION, "--index", str(news_settings.index), "-k", "10", "--facets", "source,month"]
    shown = CliRunner().invoke(ask, base, env=env)
    assert shown.exit_code == 0, shown.output
    assert f"{expected.articles} matching articles" in shown.output and "by month: 2012-05 (" in shown.output
    as_json = CliRunner().invoke(ask, [*base, "--json"], env=env)
    assert json.loads(as_json.output)["facets"]["articles"] == expected.articles
    with Engine(news_settings) as engine:
        assert engine.facets(QUESTION) == expected
        with pytest.raises(semsearch.InvalidSearchError, match="fields="):
            engine.facets(QUESTION, "author")


def test_the_candidates_are_each_retrievers_top_hundred(news_searcher: Searcher) -> None:
    """Read straight from the index, apart from the ranking code: the vector index's and BM25's top 100."""
    vector = news_searcher.encode([QUESTION])
    _, dense = news_searcher.index.search(vector, 100)
    _, lexical = news_searcher.index.lexical_search(ANALYZER.terms(QUESTION), 100)
    expected = {int(i) for i in dense[0] if i >= 0} | {int(i) for i in lexical}
    assert set(news_searcher.candidates(QUESTION, 10).tolist()) == expected


@pytest.fixture(scope="module")
def sourced(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, base_settings: Settings) -> Searcher:
    """Twelve posts under three sources, one spelled two ways, and some without a date or a source."""
    root = tmp_path_factory.mktemp("sources")
    names = ["Daily Planet", "daily planet", "The Bugle", "Gazette", None]
    records = []
    for n, record in enumerate(GV_RECORDS[:12]):
        records.append({**record, "source": names[n % len(names)], "date": None if n % 6 == 5 else record["date"]})
    settings = base_settings.replace(index=root / "index")
    build_index([write_corpus(root / "corpus", {"a.jsonl": jsonl(records)})], settings, embedder=embedder)
    return Searcher.open(settings, embedder)


def test_sources_fold_their_spellings_and_count_each_article_once(sourced: Searcher) -> None:
    found = sourced.facets("press freedom", ("source", "month"), 10)
    rows = sourced.index.passages(sourced.candidates("press freedom", 10).tolist())
    articles = {row.article_id: row for row in rows.values()}
    by_source = Counter(fold(r.source) for r in articles.values() if r.source)
    assert found.articles == len(articles)
    assert found.source is not None and len(found.source) == len(by_source) <= 3
    assert {fold(v.value): v.count for v in found.source} == dict(by_source)
    planet = next(v for v in found.source if fold(v.value) == "daily planet")
    assert planet.value in ("Daily Planet", "daily planet")
    assert sum(v.count for v in found.month or []) == sum(1 for r in articles.values() if r.date)
