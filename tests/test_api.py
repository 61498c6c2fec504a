"""The HTTP contract through TestClient against a real index of the bundled corpus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from semsearch.api.app import create_app
from semsearch.index.model.export.onnx_export import EXPORT_REVISION
from semsearch.settings import Settings
from tests.helpers import HIT_FIELDS

CK = "china-kazakhstan-cooperation.txt"


@pytest.fixture(scope="module")
def client(news_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(news_settings)) as test_client:
        yield test_client


def assert_error(response, status: int, kind: str) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind
    assert body["error"]["message"]
    return str(body["error"]["message"])


def test_get_search_puts_china_kazakhstan_first(client: TestClient) -> None:
    response = client.get("/search", params={"q": "energy cooperation in Central Asia", "k": 3})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"query", "mode", "took_ms", "hits"} and body["mode"] == "hybrid"
    assert body["query"] == "energy cooperation in Central Asia" and body["took_ms"] > 0
    assert len(body["hits"]) == 3 and body["hits"][0]["article_id"] == CK
    assert set(body["hits"][0]) == HIT_FIELDS


def test_post_search_matches_get(client: TestClient) -> None:
    got = client.get("/search", params={"q": "Lesotho election", "k": 5}).json()
    posted = client.post("/search", json={"query": "  Lesotho election ", "k": 5}).json()
    assert [h["passage_id"] for h in got["hits"]] == [h["passage_id"] for h in posted["hits"]]
    assert posted["query"] == "Lesotho election"
    assert len(client.post("/search", json={"query": "Lesotho"}).json()["hits"]) == 10


def test_article_with_passages(client: TestClient) -> None:
    article = client.get(f"/articles/{CK}").json()
    assert article["id"] == CK and article["title"].startswith("China and Kazakhstan")
    assert article["passages"] and all(
        article["body"][p["offsets"][0] : p["offsets"][1]] == p["text"] for p in article["passages"]
    )
    assert client.get("/articles/gv-322227").json()["source"].startswith("Global Voices")
    assert "unknown-id" in assert_error(client.get("/articles/unknown-id"), 404, "not_found")


def test_health_and_stats(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "index_loaded": True}
    stats = client.get("/stats").json()
    assert stats["articles"] == 408 and stats["passages"] > 3000
    assert stats["model"]["name"].startswith("sentence-transformers/all-MiniLM-L6-v2")
    assert stats["model"]["backend"] == "onnx-int8"
    assert stats["model"]["export_revision"] == EXPORT_REVISION  # which export recipe made the vectors
    assert stats["index_type"] and stats["built_at"] and stats["index_bytes"] > 0


@pytest.mark.parametrize(
    ("params", "kind"),
    [
        ({"q": ""}, "invalid_request"),
        ({"q": "   \t "}, "invalid_request"),
        ({"q": "x" * 1001}, "invalid_request"),
        ({"q": "ok", "k": 0}, "invalid_request"),
        ({"q": "ok", "k": 101}, "invalid_request"),
        ({"q": "ok", "k": -1}, "invalid_request"),
        ({"q": "ok", "k": "abc"}, "invalid_request"),
        ({"k": 5}, "invalid_request"),
        ({"q": "nul\x00byte"}, "invalid_request"),
    ],
)
def test_bad_get_queries_are_422(client: TestClient, params: dict[str, object], kind: str) -> None:
    assert_error(client.get("/search", params=params), 422, kind)


@pytest.mark.parametrize(
    "body",
    [{}, {"query": ""}, {"query": 5}, {"query": "ok", "k": 1000000}, {"query": "ok", "extra": 1}, [], "text"],
)
def test_bad_post_bodies_are_422(client: TestClient, body: object) -> None:
    assert_error(client.post("/search", json=body), 422, "invalid_request")


def test_malformed_json_and_wrong_content_type(client: TestClient) -> None:
    assert_error(
        client.post("/search", content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "invalid_request",
    )
    assert_error(
        client.post("/search", content=b"query=x", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )


def test_oversized_body_is_413(client: TestClient, news_settings: Settings) -> None:
    big = b'{"query": "' + b"a" * news_settings.max_body_bytes + b'"}'
    assert_error(
        client.post("/search", content=big, headers={"content-type": "application/json"}), 413, "payload_too_large"
    )


def test_unicode_queries_work(client: TestClient) -> None:
    for query in ("Қазақстан мен Қытай энергетика", "中国 哈萨克斯坦 能源合作", "control\x07chars"):
        assert client.get("/search", params={"q": query, "k": 2}).status_code == 200


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.delete("/search"), 405, "method_not_allowed")


def test_page_is_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<form id="search"' in page.text and "http" not in page.text.split("<script>")[1].split("fetch")[0]


def test_without_index_search_is_503_and_health_says_so(tmp_path: Path, news_settings: Settings) -> None:
    with TestClient(create_app(news_settings.replace(index=tmp_path / "none"))) as empty:
        assert empty.get("/health").json() == {"status": "ok", "index_loaded": False}
        assert "semsearch index" in assert_error(empty.get("/search", params={"q": "x"}), 503, "no_index")


def test_search_parameters_reach_the_engine(client: TestClient) -> None:
    q = "energy cooperation in Central Asia"
    lexical = client.get("/search", params={"q": q, "mode": "lexical", "k": 5}).json()
    assert lexical["mode"] == "lexical" and lexical["hits"]
    uncapped = client.get("/search", params={"q": q, "per_article": 0, "k": 10}).json()["hits"]
    capped = client.post("/search", json={"query": q, "per_article": 1, "k": 10}).json()["hits"]
    assert [h["article_id"] for h in uncapped].count(CK) > 1
    assert [h["article_id"] for h in capped].count(CK) == 1
    hit = uncapped[0]
    assert hit["highlights"] and all(hit["text"][s:e].lower().startswith(("energ", "cooper", "central", "asia"))
                                     for s, e in hit["highlights"])  # fmt: skip
    dated = client.get("/search", params={"q": q, "date_from": "2004-10-01", "date_to": "2004-12-31"}).json()
    assert dated["hits"] and all("2004-10-01" <= h["date"][:10] <= "2004-12-31" for h in dated["hits"])
    one = client.post("/search", json={"query": "pipelines", "article_id": CK, "per_article": 0, "k": 3}).json()
    assert {h["article_id"] for h in one["hits"]} == {CK}
    rrf = client.post("/search", json={"query": q, "mode": "hybrid", "fusion": "rrf", "weight": 0.7}).json()
    assert rrf["hits"] and rrf["mode"] == "hybrid"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"mode": "telepathy"}, "mode"),
        ({"fusion": "max"}, "fusion"),
        ({"weight": "1.5"}, "weight"),
        ({"per_article": "-1"}, "per_article"),
        ({"date_from": "May 2012"}, "date_from"),
        ({"date_to": "2012-5-1"}, "date_to"),
    ],
)
def test_bad_search_parameters_are_422(client: TestClient, params: dict[str, str], field: str) -> None:
    message = assert_error(client.get("/search", params={"q": "Kenya", **params}), 422, "invalid_request")
    assert field in message


def test_an_impossible_date_or_empty_range_is_an_invalid_filter(client: TestClient) -> None:
    assert "YYYY-MM-DD" in assert_error(
        client.get("/search", params={"q": "Kenya", "date_from": "2012-02-30"}), 422, "invalid_filter"
    )
    body = {"query": "Kenya", "date_from": "2012-06-01", "date_to": "2012-05-01"}
    assert "after date_to" in assert_error(client.post("/search", json=body), 422, "invalid_filter")
