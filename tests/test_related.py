"""Related stories: the articles closest to one article as a whole, over the ranking function on seeded vectors,
the bundled corpus (searcher, HTTP, CLI, Engine) and a small index holding a copy of an article."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semsearch import ArticleNotFoundError, Engine, InvalidSearchError
from semsearch.api.app import create_app
from semsearch.index.model.embedder import Embedder
from semsearch.index.writing.builder import build_index
from semsearch.search.filters import Filters
from semsearch.search.related import RelatedArticle, related_rows
from semsearch.search.searcher import Searcher
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS, jsonl, write_corpus

CK = "china-kazakhstan-cooperation.txt"
GV = "Global Voices (globalvoicesonline.org)"
RELATED_FIELDS = {"rank", "score", "article_id", "title", "date", "source", "url", "duplicates"}
BIN = Path(sys.executable).parent


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def ids(found: list[RelatedArticle]) -> list[str]:
    return [r.article_id for r in found]


# The ranking alone, on seeded vectors.


@pytest.mark.parametrize("seed", range(5))
def test_the_ranking_is_brute_force_cosine_without_the_source(seed: int) -> None:
    vectors = unit_rows(300, 16, seed)
    allowed = np.random.default_rng(seed).random(300) < 0.7
    picks = related_rows(vectors, 7, allowed, 20, duplicate_threshold=1.5)
    scores = vectors @ vectors[7]
    expected = [int(r) for r in np.argsort(-scores, kind="stable") if allowed[r] and r != 7][:20]
    assert [p.row for p in picks] == expected
    assert [p.score for p in picks] == pytest.approx([float(scores[r]) for r in expected])
    assert all(not p.duplicates for p in picks)


def test_copies_of_the_source_are_left_out_and_copies_of_a_result_fold_into_it() -> None:
    vectors = unit_rows(50, 8, 0)
    vectors[10] = vectors[0]  # a copy of the source
    vectors[20] = vectors[3]  # a copy of another article
    scores = vectors @ vectors[0]
    picks = related_rows(vectors, 0, np.ones(50, dtype=np.bool_), 49, duplicate_threshold=0.95)
    rows = [p.row for p in picks]
    assert 0 not in rows and 10 not in rows
    kept, folded = (3, 20) if scores[3] >= scores[20] else (20, 3)
    assert folded not in rows
    assert next(p for p in picks if p.row == kept).duplicates == (folded,)
    assert len(rows) == len(set(rows)) == 47
    # A threshold above 1 folds nothing: the copies are kept as stories of their own.
    rows = [p.row for p in related_rows(vectors, 0, np.ones(50, dtype=np.bool_), 49, duplicate_threshold=1.01)]
    assert {10, 3, 20} <= set(rows) and 0 not in rows


def test_a_duplicate_below_the_kth_still_folds_into_a_kept_one() -> None:
    def unit(*parts: float) -> list[float]:
        return [*parts, *[0.0] * (5 - len(parts))]

    source, a, b, c = unit(1), unit(0.8, 0.6), unit(0.75, 0, 0.661), unit(0.7, 0, 0, 0.714)
    a_again = unit(0.65, 0.76)  # cosine 0.976 to `a`, ranked fourth
    vectors = np.array([source, a, b, c, a_again], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    picks = related_rows(vectors, 0, np.ones(5, dtype=np.bool_), 2, duplicate_threshold=0.95)
    assert [(p.row, p.duplicates) for p in picks] == [(1, (4,)), (2, ())]


def brute_force_related(
    vectors: np.ndarray, source: int, allowed: np.ndarray, k: int, duplicate_threshold: float
) -> list[tuple[int, float, tuple[int, ...]]]:
    """The ranking read off a full sort of every row: the definition `related_rows` must keep."""
    scores = vectors @ vectors[source]
    collapse = duplicate_threshold <= 1.0
    order = [
        int(r)
        for r in np.argsort(-scores, kind="stable")
        if allowed[r] and r != source and not (collapse and scores[r] >= duplicate_threshold)
    ]
    horizon = 2 * k if collapse else k
    picks: list[tuple[int, list[int]]] = []
    for n, row in enumerate(order):
        if len(picks) == k and n >= horizon:
            break
        near = np.stack([vectors[kept] for kept, _ in picks]) @ vectors[row] >= duplicate_threshold if picks else []
        if collapse and any(near):
            picks[int(np.argmax(near))][1].append(row)
        elif len(picks) < k:
            picks.append((row, []))
    return [(row, float(scores[row]), tuple(folded)) for row, folded in picks]


@st.composite
def tied_unit_rows(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """Unit rows and a source row `e0`: each row's cosine to the source is its first coordinate, drawn from a
    few values so that many rows tie exactly; some rows are copies of others (they fold, or tie with them)."""
    n = draw(st.integers(2, 80))
    dim = draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    first = rng.choice(np.array([0.9, 0.6, 0.3, 0.0, -0.3], dtype=np.float32), n)
    rest = rng.standard_normal((n, dim - 1)).astype(np.float32)
    rest *= np.sqrt(1 - first**2)[:, None] / np.linalg.norm(rest, axis=1, keepdims=True)
    vectors = np.concatenate([first[:, None], rest], axis=1).astype(np.float32)
    copies = rng.random(n) < draw(st.sampled_from([0.0, 0.3, 0.8]))
    vectors[copies] = vectors[rng.integers(0, n, int(copies.sum()))]
    source = draw(st.integers(0, n - 1))
    vectors[source] = np.eye(dim, dtype=np.float32)[0]
    return vectors, source


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    tied_unit_rows(),
    st.integers(0, 2**32 - 1),
    st.integers(1, 25),
    st.sampled_from([0.5, 0.8, 0.95, 1.0, 1.01, 1.5]),
)
def test_the_ranking_is_the_full_sorts_with_ties_by_row(
    rows: tuple[np.ndarray, int], seed: int, k: int, duplicate_threshold: float
) -> None:
    vectors, source = rows
    allowed = np.random.default_rng(seed).random(len(vectors)) < 0.8
    picks = related_rows(vectors, source, allowed, k, duplicate_threshold)
    expected = brute_force_related(vectors, source, allowed, k, duplicate_threshold)
    assert [(p.row, p.score, p.duplicates) for p in picks] == expected


# The bundled corpus.


def test_related_stories_of_china_kazakhstan(news_searcher: Searcher) -> None:
    found = news_searcher.related(CK, 10)
    assert len(found) == 10 and [r.rank for r in found] == list(range(1, 11))
    assert CK not in ids(found) and len(set(ids(found))) == 10
    # China's claims over the South China Sea's resources, and Taiwan's energy future: the corpus holds no other
    # post on Central Asia's trade and energy, and its Central Asian posts are about satire, art and blogging.
    assert {"gv-319988", "gv-323448", "gv-320405"} <= set(ids(found))
    scores = [r.score for r in found]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s < 0.95 for s in scores)
    first = found[0]
    assert first.title == "China, Philippines: Scarborough Shoal Sovereignty Tension Rises"
    assert first.source == GV and first.date and first.url and first.url.startswith("http")


def test_k_and_filters_are_respected(news_searcher: Searcher) -> None:
    assert len(news_searcher.related(CK, 3)) == 3
    assert ids(news_searcher.related(CK, 3)) == ids(news_searcher.related(CK, 10))[:3]
    found = news_searcher.related(CK, 100, Filters.parse("2004-12-01", "2004-12-31"))
    assert found and all(r.date and "2004-12-01" <= r.date[:10] <= "2004-12-31" for r in found)
    assert news_searcher.related(CK, 5, Filters.parse(source="no such source")) == []
    # The source article itself has no source: the filter applies to the others only.
    assert all(r.source == GV for r in news_searcher.related(CK, 20, Filters.parse(source=GV.upper())))
    with pytest.raises(ArticleNotFoundError, match="no-such-article"):
        news_searcher.related("no-such-article")
    with pytest.raises(ValueError, match="k must be"):
        news_searcher.related(CK, 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    article=st.sampled_from([CK, "gv-319988", "gv-10", "gv-316909", "gv-322940"]),
    k=st.integers(1, 100),
    days=st.tuples(st.dates(date(2004, 11, 1), date(2012, 6, 30)), st.dates(date(2004, 11, 1), date(2012, 6, 30))),
    dated=st.sampled_from(["both", "from", "to", "none"]),
    source=st.sampled_from([None, GV, "global voices (GLOBALVOICESONLINE.ORG)", "elsewhere"]),
)
def test_any_filters_give_matching_sorted_related_articles(
    news_searcher: Searcher, article: str, k: int, days: tuple[date, date], dated: str, source: str | None
) -> None:
    start, end = (d.isoformat() for d in sorted(days))
    start = start if dated in ("both", "from") else None
    end = end if dated in ("both", "to") else None
    found = news_searcher.related(article, k, Filters.parse(start, end, source))
    assert len(found) <= k and article not in ids(found)
    assert [r.rank for r in found] == list(range(1, len(found) + 1))
    assert [r.score for r in found] == sorted((r.score for r in found), reverse=True)
    shown = ids(found) + [d for r in found for d in r.duplicates]
    assert len(shown) == len(set(shown))
    for article_id in shown:
        stored = news_searcher.index.article(article_id)
        assert stored is not None
        record = stored[0]
        day = (record["date"] or "")[:10]
        assert start is None or (day and day >= start)
        assert end is None or (day and day <= end)
        assert source is None or (record["source"] or "").casefold() == source.casefold()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    article_id=st.text(st.characters(codec=None) | st.sampled_from("\udcff\x00/%"), max_size=20)
    | st.sampled_from(["gv-", "china-kazakhstan", f"{CK}/related", "GV-10", ""])
)
def test_any_other_id_is_not_found(news_searcher: Searcher, article_id: str) -> None:
    """Any text, lone surrogates (as argv carries undecodable bytes) included: the id names no article."""
    with pytest.raises(ArticleNotFoundError, match="No article with id"):
        news_searcher.related(article_id)


# A small index with a copy of an article under another id.


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, base_settings: Settings) -> Settings:
    root = tmp_path_factory.mktemp("related")
    records = [*GV_RECORDS[:8], {**GV_RECORDS[0], "_id": "copy-of-0"}, {**GV_RECORDS[1], "_id": "copy-of-1"}]
    settings = base_settings.replace(index=root / "index")
    build_index([write_corpus(root / "corpus", {"a.jsonl": jsonl(records)})], settings, embedder=embedder)
    return settings


def test_a_copy_of_the_article_is_not_a_related_story(copies: Settings, embedder: Embedder) -> None:
    searcher = Searcher.open(copies, embedder)
    try:
        original, other = GV_RECORDS[0]["_id"], GV_RECORDS[1]["_id"]
        found = searcher.related(original, 100)
        assert original not in ids(found) and "copy-of-0" not in ids(found)
        # The other article and its copy are one story: the first kept, the copy folded into it.
        assert len(found) == 7 and [r.article_id for r in found].count(other) == 1
        pair = next(r for r in found if r.article_id == other)
        assert pair.duplicates == ("copy-of-1",) and "copy-of-1" not in ids(found)
        assert all(not r.duplicates for r in found if r is not pair)
        # From the copy's side the original is the same story too.
        assert {original, "copy-of-0"}.isdisjoint(ids(searcher.related("copy-of-0", 100)))
    finally:
        searcher.close()


# HTTP, CLI and the Python API.


@pytest.fixture(scope="module")
def client(news_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(news_settings)) as test_client:
        yield test_client


def error_type(response, status: int) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"} and body["error"]["message"]
    return str(body["error"]["type"])


def test_http_related(client: TestClient, news_searcher: Searcher) -> None:
    response = client.get(f"/articles/{CK}/related", params={"k": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"article_id", "related"} and body["article_id"] == CK
    assert [r["article_id"] for r in body["related"]] == ids(news_searcher.related(CK, 4))
    assert all(set(r) == RELATED_FIELDS for r in body["related"])
    assert len(client.get(f"/articles/{CK}/related").json()["related"]) == 10
    dated = client.get(f"/articles/{CK}/related", params={"date_from": "2012-05-15", "date_to": "", "k": 100})
    assert all(r["date"][:10] >= "2012-05-15" for r in dated.json()["related"])
    # An id may hold a `/`, escaped or not; the article itself is still read at its own path.
    assert client.get("/articles/a%2Fb/related").status_code == 404
    assert client.get(f"/articles/{CK}").json()["id"] == CK


def test_http_related_errors(client: TestClient) -> None:
    assert error_type(client.get("/articles/no-such-article/related"), 404) == "article_not_found"
    for k in ("0", "101", "ten", "1.5"):
        assert error_type(client.get(f"/articles/{CK}/related", params={"k": k}), 422) == "invalid_request"
    assert error_type(client.get(f"/articles/{CK}/related?date_from=2012-5-1"), 422) == "invalid_request"
    assert error_type(client.get(f"/articles/{CK}/related?date_from=2012-02-30"), 422) == "invalid_filter"
    bad_range = client.get(f"/articles/{CK}/related", params={"date_from": "2012-05-02", "date_to": "2012-05-01"})
    assert error_type(bad_range, 422) == "invalid_filter"


def run(*args: str, index: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMSEARCH_")}
    env["SEMSEARCH_INDEX"] = str(index)
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, env=env, timeout=300)


def test_cli_prints_related_articles(news_settings: Settings, news_searcher: Searcher) -> None:
    result = run("ask", "--related", CK, "-k", "3", index=news_settings.index)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("1. [") and lines[0].endswith(news_searcher.related(CK, 1)[0].title)
    assert [line[:3] for line in lines[::2]] == ["1. ", "2. ", "3. "] and len(lines) == 6
    as_json = run("semsearch", "ask", "--related", CK, "--json", "--source", GV, index=news_settings.index)
    assert as_json.returncode == 0, as_json.stderr
    found = json.loads(as_json.stdout)
    assert len(found) == 5 and all(set(r) == RELATED_FIELDS and r["source"] == GV for r in found)


def test_cli_related_errors(news_settings: Settings) -> None:
    unknown = run("ask", "--related", "no-such-article", index=news_settings.index)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.strip().count("\n") == 0 and "no-such-article" in unknown.stderr
    neither, both = [], ["a question", "--related", CK]
    for args in (neither, both, ["--related", CK, "--mode", "dense"], ["--related", CK, "-k", "0"]):
        refused = run("ask", *args, index=news_settings.index)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, (args, refused.stderr)
    assert "not both" in run("ask", "q", "--related", CK, index=news_settings.index).stderr


def test_engine_related(news_settings: Settings, news_searcher: Searcher) -> None:
    with Engine.open(settings=news_settings) as engine:
        found = engine.related(CK, 5, date_from="2012-01-01", source=GV)
        assert ids(found) == ids(news_searcher.related(CK, 5, Filters.parse("2012-01-01", source=GV)))
        assert len(found) == 5 and all(r.date and r.date >= "2012-01-01" for r in found)
        with pytest.raises(ArticleNotFoundError):
            engine.related("no-such-article")
        with pytest.raises(InvalidSearchError, match="k must be"):
            engine.related(CK, 101)
