"""The recency boost: `recency_half_life` scales each score by a decay of its article's age before `now`, with
undated articles kept as the oldest; checked as pure functions and on the bundled corpus over every surface."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

import semsearch
from semsearch.api.app import create_app
from semsearch.api.cli import ask
from semsearch.engine import Engine
from semsearch.errors import InvalidSearchError
from semsearch.index.reading.dates import timestamp
from semsearch.params import INSTANT_PATTERN, MODES
from semsearch.search import recency
from semsearch.search.results import Hit
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings

QUESTION = "energy cooperation in Central Asia"
NEWEST = "2012-05-22T16:00:00Z"  # just after the bundled corpus's newest article
DAY = recency.DAY
ages = st.floats(min_value=-3650, max_value=36500, allow_nan=False)
half_lives = st.floats(min_value=0.01, max_value=36500)


def ids(hits: list[Hit]) -> list[int]:
    return [h.passage_id for h in hits]


@given(older=ages, newer=ages, half_life=half_lives)
def test_a_newer_article_keeps_at_least_as_much(older: float, newer: float, half_life: float) -> None:
    now = 2e9
    older, newer = max(older, newer), min(older, newer)
    kept = recency.factors(np.array([now - older * DAY, now - newer * DAY, np.nan]), now, half_life)
    assert recency.FLOOR <= kept[0] <= kept[1] <= 1.0
    assert kept[2] == recency.FLOOR  # undated: as the oldest, never above a dated article
    if newer <= 0:
        assert kept[1] == 1.0  # dated at or after now: all of it


@given(score=st.floats(min_value=-1, max_value=100, allow_nan=False), kept=st.floats(min_value=0.5, max_value=1))
def test_the_boost_never_lifts_a_score(score: float, kept: float) -> None:
    (moved,) = recency.boosted(np.array([score]), np.array([kept]))
    assert moved <= score and abs(score - moved) <= (1 - kept) * abs(score) + 1e-12


def test_one_half_life_keeps_three_quarters() -> None:
    now = timestamp("2012-05-31")
    assert now is not None
    kept = recency.factors(np.array([now, now - 7 * DAY, now - 7000 * DAY]), now, 7)
    assert np.allclose(kept, [1.0, 0.75, 0.5], atol=1e-6)


@pytest.mark.parametrize("text", ["2024-02-30", "2024-13-01", "2024-05-31T25:00:00"])
def test_a_now_that_is_no_real_moment_is_refused(text: str) -> None:
    with pytest.raises(InvalidSearchError, match="now="):
        recency.instant(text, 0.0)


# Python reads these as moments, HTTP's pattern does not: the Engine and the CLI refuse them too.
OUTSIDE_THE_PATTERN = ["2012-W22-1", "20120531", "2012-05-31T12", "2012-05-31\n", " 2012-05-31", "  "]


@pytest.mark.parametrize("text", OUTSIDE_THE_PATTERN)
def test_a_now_outside_the_pattern_is_refused_as_http_refuses_it(text: str) -> None:
    assert re.fullmatch(INSTANT_PATTERN, text) is None
    with pytest.raises(InvalidSearchError, match=f"^now={re.escape(repr(text))} is not a day or time"):
        recency.instant(text, 0.0)
    with pytest.raises(InvalidSearchError, match="now="):
        recency.requested(None, text)  # refused even without a half-life, not ignored


def test_now_reads_days_times_and_zones_as_utc() -> None:
    assert recency.instant("2012-05-31", 0.0) == recency.instant("2012-05-31T00:00:00Z", 0.0)
    assert recency.instant("2012-05-31T02:00:00+02:00", 0.0) == recency.instant("2012-05-31", 0.0)
    assert recency.instant(None, 42.0) == recency.instant("", 42.0) == 42.0  # empty is left out, as over HTTP
    assert recency.requested(None, "2012-05-31") is None  # no half-life, no boost
    with pytest.raises(InvalidSearchError, match="now="):
        recency.requested(None, "2012-02-30")  # but a bad `now` is refused, not ignored


def test_without_now_ages_count_from_the_clock_floored_to_the_minute() -> None:
    """Requests of one minute share one SearchOptions, so the micro-batcher can group them."""
    assert recency.requested(3.0, None, clock=lambda: 125.0) == 120.0
    assert recency.requested(3.0, "", clock=lambda: 179.9) == recency.requested(3.0, None, clock=lambda: 120.0)
    assert recency.requested(3.0, None, clock=lambda: 180.0) == 180.0
    assert recency.requested(3.0, "2012-05-31T12:00:30Z", clock=lambda: 125.0) == timestamp("2012-05-31T12:00:30Z")


def boost(searcher: Searcher, half_life: float, now: str = NEWEST, **changes: object) -> list[Hit]:
    moment = recency.instant(now, 0.0)
    options = searcher.defaults.replace(recency_half_life=half_life, now=moment, **changes)
    return searcher.search(QUESTION, 10, options)


@pytest.mark.parametrize("mode", MODES)
def test_recent_articles_rise_and_scores_carry_their_decay(news_searcher: Searcher, mode: str) -> None:
    plain = news_searcher.search(QUESTION, 10, news_searcher.defaults.replace(mode=mode))
    boosted = boost(news_searcher, 2, mode=mode)
    now = recency.instant(NEWEST, 0.0)

    def mean_age(hits: list[Hit]) -> float:
        return float(np.mean([now - (timestamp(h.date) or 0.0) for h in hits]))

    assert mean_age(boosted) < mean_age(plain)
    # Each hit's score is its relevance scaled by its own article's share, so the order is by that product.
    assert [h.score for h in boosted] == sorted((h.score for h in boosted), reverse=True)


def test_a_long_half_life_keeps_dated_scores_and_a_far_now_halves_every_score(news_searcher: Searcher) -> None:
    plain = news_searcher.search(QUESTION, 10)
    before = {h.passage_id: h.score for h in news_searcher.search(QUESTION, 100)}
    for hit in boost(news_searcher, 36500):  # a dated article keeps (nearly) all, an undated one half
        assert hit.score == pytest.approx(before[hit.passage_id] * (0.5 if hit.date is None else 1.0), abs=1e-3)
    far = boost(news_searcher, 1, now="2100-01-01")
    assert ids(far) == ids(plain)  # every article (dated or not) keeps half: the order stays
    assert np.allclose([h.score for h in far], [h.score * 0.5 for h in plain], atol=1e-3)


def test_undated_articles_are_kept_as_the_oldest(news_searcher: Searcher) -> None:
    """The China-Kazakhstan post has no date: under a boost it keeps half its score, like a very old article,
    and stays in the results when it is relevant enough."""
    plain = {h.passage_id: h for h in news_searcher.search(QUESTION, 10)}
    undated = [h for h in boost(news_searcher, 3650) if h.date is None]
    assert undated and all(h.passage_id in plain for h in undated)
    for hit in undated:
        assert hit.score == pytest.approx(plain[hit.passage_id].score * 0.5, abs=1e-3)


def test_pages_of_a_boosted_search_are_its_top_thirty(news_searcher: Searcher) -> None:
    now = recency.instant(NEWEST, 0.0)
    options = news_searcher.defaults.replace(recency_half_life=5.0, now=now)
    top = news_searcher.search(QUESTION, 30, options)
    pages = [news_searcher.search(QUESTION, 10, options.replace(offset=o)) for o in (0, 10, 20)]
    assert ids([h for page in pages for h in page]) == ids(top)


@pytest.fixture(scope="module")
def client(news_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(news_settings)) as test_client:
        yield test_client


def test_http_ask_and_engine_boost_alike(client: TestClient, news_settings: Settings, news_searcher: Searcher) -> None:
    expected = ids(boost(news_searcher, 2))
    params = {"q": QUESTION, "recency_half_life": 2, "now": NEWEST}
    got = client.get("/search", params=params).json()["hits"]
    posted = client.post("/search", json={"query": QUESTION, "recency_half_life": 2, "now": NEWEST}).json()["hits"]
    assert [h["passage_id"] for h in got] == [h["passage_id"] for h in posted] == expected
    result = CliRunner().invoke(
        ask,
        [
            QUESTION,
            "--index",
            str(news_settings.index),
            "--json",
            "-k",
            "10",
            "--recency-half-life",
            "2",
            "--now",
            NEWEST,
        ],
        env={"SEMSEARCH_BACKEND": news_settings.backend},
    )
    assert result.exit_code == 0, result.output
    assert [h["passage_id"] for h in json.loads(result.output)] == expected
    with Engine(news_settings) as engine:
        assert ids(engine.search(QUESTION, recency_half_life=2, now=NEWEST)) == expected
        with pytest.raises(semsearch.InvalidSearchError, match="recency_half_life"):
            engine.search(QUESTION, recency_half_life=0)
        with pytest.raises(semsearch.InvalidSearchError, match="now="):
            engine.search(QUESTION, recency_half_life=2, now="2012-02-30")


def test_http_ask_and_engine_refuse_a_now_outside_the_pattern_alike(
    client: TestClient, news_settings: Settings
) -> None:
    bad = ["2012-W22-1", "20120531"]
    for now in bad:
        for boosting in ({"recency_half_life": 2}, {}):
            got = client.get("/search", params={"q": QUESTION, "now": now, **boosting})
            assert got.status_code == 422 and "now" in got.json()["error"]["message"], got.text
        result = CliRunner().invoke(ask, [QUESTION, "--index", str(news_settings.index), "--now", now])
        assert result.exit_code == 2 and "Invalid value for '--now'" in result.output, result.output
    with Engine(news_settings) as engine:
        for now in bad:
            for half_life in (2.0, None):
                with pytest.raises(semsearch.InvalidSearchError, match="now="):
                    engine.search(QUESTION, recency_half_life=half_life, now=now)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(now=st.text(max_size=30) | st.dates().map(str) | st.sampled_from(["2012-02-30", "2012-05-31T24:00:00"]))
def test_http_takes_exactly_the_real_moments_and_refuses_the_rest_with_422(client: TestClient, now: str) -> None:
    response = client.get("/search", params={"q": QUESTION, "recency_half_life": 2, "now": now})
    real = now == "" or (re.fullmatch(INSTANT_PATTERN, now) is not None and timestamp(now) is not None)
    if real:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 422, response.text
        assert "now" in response.json()["error"]["message"]
