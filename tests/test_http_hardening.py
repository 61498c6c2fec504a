"""What a hostile or careless client found over HTTP: each case as it was reported, fixed at its cause.

The order of checks on a write (token, media type, then body), error bodies that stay small whatever was sent,
only http(s) links stored from any ingest path, strict JSON types, empty parameters as unset, HEAD on every GET
route, and the API docs served without a CDN.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from semsearch.api.app import create_app
from semsearch.api.errors import error_response
from semsearch.index.reading.articles import ReadReport
from semsearch.index.reading.readers import read_corpus
from semsearch.settings import Settings
from tests.helpers import jsonl, write_corpus
from tests.test_api import assert_error

TOKEN = "hardening-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json"}
MAX_ERROR_BYTES = 4096
ARTICLE = {"id": "link-1", "title": "Ferry", "body": "A ferry line across the Caspian Sea links Aktau and Baku."}
# A body of 1 MiB or so holding nothing the write knows.
UNKNOWN_KEYS = json.dumps({f"key{n}": n for n in range(80_000)}).encode()


@pytest.fixture(scope="module")
def settings(gv_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("hardening")
    shutil.copytree(gv_settings.index, root / "index")
    return gv_settings.replace(index=root / "index", api_token=TOKEN, reload_seconds=0)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def small_error(response: Any, status: int, kind: str) -> str:
    assert len(response.content) < MAX_ERROR_BYTES, (response.status_code, len(response.content))
    return assert_error(response, status, kind)


def test_a_write_checks_the_token_before_it_reads_the_body(client: TestClient) -> None:
    """Before: a 1 MiB body of unknown keys, or one that is not JSON, was parsed and answered with its
    validation errors (MiBs of them) to a client without the token."""
    for method, path in (("POST", "/articles"), ("PUT", "/articles/link-1")):
        for body in (UNKNOWN_KEYS, b"{not json", b"[" * 5000):
            small_error(client.request(method, path, content=body, headers=JSON), 401, "unauthorized")
            wrong = {**JSON, "Authorization": "Bearer wrong"}
            small_error(client.request(method, path, content=body, headers=wrong), 403, "forbidden")
        # The media type is checked after the token, still before the body.
        plain = {"content-type": "text/plain"}
        small_error(client.request(method, path, content=b"{", headers=plain), 401, "unauthorized")
        small_error(
            client.request(method, path, content=b"{", headers={**plain, **AUTH}), 415, "unsupported_media_type"
        )
    small_error(client.delete("/articles/link-1"), 401, "unauthorized")


def test_error_bodies_stay_small_whatever_the_input(client: TestClient) -> None:
    message = small_error(
        client.post("/articles", content=UNKNOWN_KEYS, headers={**JSON, **AUTH}), 422, "invalid_request"
    )
    assert message.startswith("articles: Field required; key0: Extra inputs") and "more problems" in message
    huge_key = json.dumps({"articles": [ARTICLE], "k" * 500_000: 1}).encode()
    small_error(client.post("/articles", content=huge_key, headers={**JSON, **AUTH}), 422, "invalid_request")
    small_error(client.post("/search", json={"query": "x", "q" * 300_000: 1}), 422, "invalid_request")
    long_id = "x" * 60_000
    assert "more characters" in small_error(client.get("/articles/" + long_id), 404, "not_found")
    put = client.put("/articles/" + long_id, json={**ARTICLE, "id": long_id}, headers=AUTH)
    small_error(put, 422, "invalid_request")
    # Control characters are escaped in JSON (6 bytes each); the cap holds for them too.
    small_error(client.get("/articles/" + "%01" * 3000), 404, "not_found")


def test_an_error_message_echoing_a_lone_surrogate_is_escaped(client: TestClient) -> None:
    """A lone surrogate cannot be sent as UTF-8: one echoed in a message is escaped, not a 500."""
    response = error_response(422, "invalid_request", "bad value 'x\ud800y'")
    assert json.loads(response.body)["error"]["message"] == "bad value 'x\\ud800y'"
    body = json.dumps({**ARTICLE, "id": "bad\ud800id"}).encode()  # json.dumps writes the `\ud800` escape
    small_error(client.put("/articles/bad%ED%A0%80id", content=body, headers={**JSON, **AUTH}), 422, "invalid_request")


def test_only_http_links_are_stored_from_a_write(client: TestClient) -> None:
    """Before: `"url": "javascript:alert(document.domain)"` was stored, and the page set it as a link."""
    hostile = ["javascript:alert(document.domain)", "JaVaScRiPt:alert(1)", "data:text/html,<script>1</script>",
               "vbscript:x", "//evil.example/", "https:no-host", "java\tscript:alert(1)"]  # fmt: skip
    articles = [{**ARTICLE, "id": f"link-{n}", "url": url} for n, url in enumerate(hostile)]
    articles.append({**ARTICLE, "id": "link-ok", "url": "https://example.org/ferry?x=1"})
    written = client.post("/articles", json={"articles": articles}, headers=AUTH)
    assert written.status_code == 200, written.text
    for n, url in enumerate(hostile):
        stored = client.get(f"/articles/link-{n}").json()
        assert stored["url"] is None and stored["metadata"]["url_raw"] == url.strip()
    kept = client.get("/articles/link-ok").json()
    assert kept["url"] == "https://example.org/ferry?x=1" and "url_raw" not in kept["metadata"]
    for article_id, url in (("link-0", None), ("link-ok", "https://example.org/ferry?x=1")):
        search = {"query": "ferry across the Caspian Sea", "article_id": article_id}
        assert [h["url"] for h in client.post("/search", json=search).json()["hits"]] == [url]


def test_only_http_links_are_read_from_files(tmp_path: Path) -> None:
    records = [{"_id": "a", "text": "Grain through Aktau.", "url": "javascript:alert(1)"},
               {"_id": "b", "text": "Steel through Baku.", "url": "http://example.org/b"}]  # fmt: skip
    csv_text = 'id,text,url\nc,"Oil through Atyrau.","javascript:alert(2)"\n'
    corpus = write_corpus(tmp_path / "corpus", {"a.jsonl": jsonl(records), "c.csv": csv_text})
    articles = {a.id: a for a in read_corpus([corpus], [], ReadReport())}
    assert (articles["a"].url, articles["a"].metadata) == (None, {"url_raw": "javascript:alert(1)"})
    assert (articles["b"].url, articles["b"].metadata) == ("http://example.org/b", {})
    assert (articles["c"].url, articles["c"].metadata) == (None, {"url_raw": "javascript:alert(2)"})


def test_the_page_sets_only_http_links_and_never_parses_stored_text_as_html(client: TestClient) -> None:
    script = client.get("/").text.split("<script>")[1]
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\.html\(", script)
    assignments = re.findall(r"\.href = ([^;]+);", script)
    assert assignments and all(a == "original" or a.startswith('"?article="') for a in assignments), assignments
    assert 'url.protocol === "http:" || url.protocol === "https:"' in script


def test_an_empty_parameter_is_unset(client: TestClient) -> None:
    """Before: `date_from=` (as an HTML form sends an empty field) was a 422 though leaving it out is allowed."""
    question = {"q": "press freedom and journalists"}
    expected = client.get("/search", params=question).json()["hits"]
    empty = {name: "" for name in ("k", "mode", "fusion", "weight", "per_article", "date_from", "date_to", "source",
                                   "article_id")}  # fmt: skip
    got = client.get("/search", params={**question, **empty})
    assert got.status_code == 200, got.text
    assert got.json()["hits"] == expected
    posted = client.post("/search", json={"query": question["q"], **empty})
    assert posted.status_code == 200, posted.text
    assert posted.json()["hits"] == expected
    assert_error(client.get("/search", params={"q": ""}), 422, "invalid_request")  # the question stays required


@pytest.mark.parametrize(
    ("field", "value"),
    [("k", True), ("k", "5"), ("k", 5.0), ("weight", "0.5"), ("weight", False), ("per_article", "1"),
     ("mode", 1), ("query", 5)],
)  # fmt: skip
def test_json_bodies_have_strict_types(client: TestClient, field: str, value: object) -> None:
    """Before: `"k": true` was taken as 1 and `"k": "5"` as 5."""
    message = assert_error(client.post("/search", json={"query": "Kenya", field: value}), 422, "invalid_request")
    assert field in message


def test_query_strings_stay_text(client: TestClient) -> None:
    assert (
        client.get("/search", params={"q": "Kenya", "k": "5", "weight": "0.5", "per_article": "1"}).status_code == 200
    )
    assert client.post("/search", json={"query": "Kenya", "weight": 1, "k": 5}).status_code == 200  # 1 is a number


@pytest.mark.parametrize(
    "path",
    ["/", "/health", "/stats", "/search?q=Kenya", "/search?q=", "/articles/no-such-id", "/openapi.json", "/docs",
     "/redoc", "/nowhere", "/articles"],
)  # fmt: skip
def test_head_answers_like_get_without_a_body(client: TestClient, path: str) -> None:
    """Before: HEAD on any route was a 405."""
    got, head = client.get(path), client.head(path)
    assert head.status_code == got.status_code
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if path != "/search?q=Kenya":  # `took_ms` makes each search's length its own
        assert head.headers["content-length"] == got.headers["content-length"]


def test_the_docs_load_nothing_from_another_host(client: TestClient) -> None:
    """Before: /docs loaded Swagger UI from a CDN, so it was blank offline."""
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html), html
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets
        for asset in assets:
            assert asset.startswith("/"), asset
            assert client.get(asset).status_code == 200, asset
    assert "'/openapi.json'" in client.get("/docs").text
