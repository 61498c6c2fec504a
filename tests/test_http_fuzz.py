"""Random requests to every route (hypothesis): whatever the body, query string, path and headers, the answer
is never a 5xx, every error has the one JSON shape and stays small, a write without the token is refused
whatever it holds, and a write that succeeds can be read back with the text it sent."""

from __future__ import annotations

import json
import shutil
import unicodedata
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from semsearch.api.app import create_app
from semsearch.params import SEARCH_PARAMS
from semsearch.settings import Settings

TOKEN = "fuzz-token-5678"
MAX_ERROR_BYTES = 4096
WRITES = {"POST", "PUT", "DELETE", "PATCH"}
# Routes left out of the OpenAPI description; a test below checks that these and the described ones are all.
HIDDEN = {("GET", "/"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"),
          ("GET", "/redoc"), ("GET", "/static-offline-docs/{file}"), ("GET", "/metrics")}  # fmt: skip
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))

# Text as a careless or hostile client sends it: any code point, lone surrogates included (sent as `\ud800`
# escapes in JSON and as their WTF-8 bytes, %ED%A0%80, in a URL), control characters, odd spaces, long runs.
odd_text = st.text(st.characters(codec=None) | st.sampled_from("\ud800\udfff\x00\n\r\t \u2028\ufeff\u0301"))
long_text = st.integers(100, 1000).map(lambda n: "ab\u00e9 " * n)
texts = st.one_of(odd_text, long_text, st.sampled_from(["", " ", "0", "-1", "1e999", "true", "null", "2024-02-30"]))
numbers = st.one_of(st.integers(), st.integers(-(10**300), 10**300), st.floats(allow_nan=False))
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=12
)
NAMES = ["q", "query", "id", "articles", "body", "text", "title", "date", "url", *(p.name for p in SEARCH_PARAMS)]
names = st.sampled_from(NAMES) | texts
objects = st.dictionaries(names, json_values, max_size=6)  # the field names the routes know, and others
raw_bodies = [b"", b"{", b"[" * 5000, b'{"k": 1e999}', b'{"query": "x", "k": ' + b"9" * 5000 + b"}",
              b'{"query": NaN}', b'{"query": "\\ud800"}', '{"query": "\u00e9"}'.encode("latin-1")]  # fmt: skip
# Thousands of fields no route knows, each a validation problem.
many_fields = st.integers(100, 20_000).map(lambda n: json.dumps({f"key{i}": i for i in range(n)}).encode())
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    many_fields,
    objects.map(lambda v: json.dumps(v).encode()),
    st.lists(objects, max_size=3).map(lambda a: json.dumps({"articles": a}).encode()),
    st.binary(max_size=64),
    st.sampled_from(raw_bodies),
)


def url_escape(text: str) -> str:
    """`text` percent-encoded as UTF-8, lone surrogates as the bytes a sloppy encoder gives them, dots too (so
    that the client sends `..` as it is given rather than resolving it)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="").replace(".", "%2E")


query_strings = st.lists(st.tuples(names, texts | numbers.map(str)), max_size=6).map(
    lambda pairs: "&".join(f"{url_escape(k)}={url_escape(v)}" for k, v in pairs)
)
header_values = st.binary(max_size=40).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F))
header_names = st.sampled_from(
    ["content-type", "accept", "accept-encoding", "content-encoding", "cookie", "origin", "range",
     "if-none-match", "x-forwarded-for", "x-request-id", "user-agent", "expect"]
) | st.from_regex(r"\Ax-[a-z0-9-]{1,20}\Z")  # fmt: skip
auth_values = st.one_of(
    header_values,
    header_values.map(lambda v: b"Bearer " + v),
    st.sampled_from([b"Bearer", b"Bearer ", b"bearer wrong", b"Basic abc", f"Bearer {TOKEN}x".encode()]),
)
content_types = st.sampled_from([b"application/json", b"application/json; charset=utf-8", b"text/plain", b""])


def grants(value: bytes) -> bool:
    """Whether an `Authorization` value carries the token, as the server reads it (latin-1, trimmed)."""
    scheme, _, given = value.decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and given.strip() == TOKEN


# Random headers, with an `Authorization` that never carries the token.
headers = st.builds(
    lambda sent, auth: {**sent, "authorization": auth} if auth is not None else sent,
    st.dictionaries(header_names, header_values, max_size=5),
    st.none() | auth_values.filter(lambda v: not grants(v)),
)


@pytest.fixture(scope="module")
def fuzz_settings(gv_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(gv_settings.index, root / "index")
    return gv_settings.replace(index=root / "index", api_token=TOKEN, reload_seconds=0)


@pytest.fixture(scope="module")
def client(fuzz_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(fuzz_settings), raise_server_exceptions=False) as test_client:
        yield test_client


def described_routes(client: TestClient) -> set[tuple[str, str]]:
    spec = client.get("/openapi.json").json()
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}


def fill(template: str, value: str) -> str:
    """The path with its `{parameter}` replaced by `value`, escaped (a `/` in it kept, as ids may hold)."""
    head, _, rest = template.partition("{")
    if not rest:
        return template
    return head + "/".join(url_escape(part) for part in value.split("/")) + rest.partition("}")[2]


def check_answer(response: httpx.Response, method: str) -> None:
    """What every answer is: no 5xx; an error in the one JSON shape, small; a HEAD without a body."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if method == "HEAD":
        assert response.content == b""
        return
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json", response.headers
        assert len(response.content) < MAX_ERROR_BYTES, len(response.content)
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
        assert isinstance(body["error"]["type"], str) and body["error"]["message"], body


def test_the_fuzzed_routes_are_all_the_routes(client: TestClient) -> None:
    described = described_routes(client)
    top = {route.path for route in client.app.routes if hasattr(route, "path")}  # type: ignore[attr-defined]
    assert {("GET", "/search"), ("POST", "/articles"), ("DELETE", "/articles/{article_id}")} <= described
    assert top <= {path for _, path in described | HIDDEN} | {"/static-offline-docs"}, top
    assert client.get("/").status_code == 200 and client.get("/static-offline-docs/swagger-ui.css").status_code == 200


@settings(FUZZ, max_examples=400)
@given(data=st.data())
def test_any_request_to_any_route_gets_a_clear_answer(client: TestClient, data: st.DataObject) -> None:
    method, template = data.draw(st.sampled_from(sorted(described_routes(client) | HIDDEN)))
    method = data.draw(st.sampled_from([method, method, method, "HEAD", "PATCH", "OPTIONS"]))
    path = fill(template, data.draw(st.sampled_from(["swagger-ui.css", "..", "../pyproject.toml"]) | texts))
    sent = data.draw(headers)
    body = None
    if method in ("POST", "PUT", "PATCH"):
        sent = {"content-type": data.draw(content_types), **sent}
        body = data.draw(bodies)
    query = data.draw(query_strings)
    if template == "/search" and data.draw(st.booleans()):
        query = f"q={url_escape(data.draw(texts))}&{query}"
    url = path + ("?" + query if query else "")
    assume(len(url) < 60_000)  # the client's own limit is 64 KiB
    response = client.request(method, url, content=body, headers=sent)
    check_answer(response, method)
    event(f"{method} {template}: {response.status_code}")
    if method in WRITES and template.startswith("/articles"):
        assert response.status_code in (401, 403, 405), response.text  # never the token here: refused first


@settings(FUZZ, max_examples=150)
@given(
    method=st.sampled_from(["POST", "PUT", "DELETE"]),
    article_id=texts.filter(bool),
    body=bodies,
    content_type=content_types,
    sent=headers,
)
def test_a_write_without_the_token_is_refused_whatever_it_holds(
    client: TestClient, method: str, article_id: str, body: bytes, content_type: bytes, sent: dict[str, bytes]
) -> None:
    path = "/articles" if method == "POST" else fill("/articles/{id}", article_id)
    assume(len(path) < 60_000)
    response = client.request(method, path, content=body, headers={"content-type": content_type, **sent})
    check_answer(response, method)
    event(f"{method}: {response.status_code}")
    if method != "POST" and any(c in article_id for c in "\n\r"):
        assert response.status_code in (401, 403, 404), response.text  # no route matches a line break in a path
    else:
        assert response.status_code in (401, 403), response.text


# Articles near enough to valid that many are written: any text in each field, and now and then a field of
# another type, a date in another form, a link that is not http(s).
def mostly(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`strategy` nine times in ten, else any JSON scalar (null, a number, any text)."""
    return st.integers(0, 9).flatmap(lambda n: scalars if n == 0 else strategy)


printable = st.text(st.characters(categories=["L", "M", "N", "P", "S"]) | st.just(" "), min_size=1, max_size=60)
# Without `%`: Starlette's TestClient unquotes a path twice (httpx's decoded path, then again), which a real
# server does not; test_server.py's stateful run writes and reads such ids back over a socket.
article_ids = st.one_of(
    printable,
    odd_text.filter(lambda s: 0 < len(s) < 200),
    st.from_regex(r"\A[a-z0-9/._ -]{1,30}\Z"),
    st.sampled_from([" padded ", "a/b/c.txt", "../x", "cafe\u0301", "caf\u00e9", "ｅｎｅｒｇｙ", "x?y#z"]),
).filter(lambda s: "%" not in s)
articles = st.fixed_dictionaries(
    {"id": article_ids, "body": mostly(odd_text.filter(str.strip) | st.sampled_from(["Ferry.", "café\r\n\r\nline"]))},
    optional={
        "title": mostly(odd_text),
        "date": mostly(st.sampled_from(["2024-05-31", "2024-05-31T10:00:00Z", "31 May 2024", "1e300"])),
        "source": mostly(odd_text),
        "url": mostly(st.sampled_from(["https://example.org/a?b=1", "javascript:alert(1)", " http://x.org "])),
        "author": mostly(odd_text),
        "tags": json_values,
    },
)


@settings(FUZZ, max_examples=100)
@given(batch=st.lists(articles, min_size=1, max_size=3), put=st.booleans(), extra=headers)
def test_a_write_that_succeeds_reads_back_the_same_text(
    client: TestClient, batch: list[dict[str, Any]], put: bool, extra: dict[str, bytes]
) -> None:
    sent = {**extra, "authorization": f"Bearer {TOKEN}".encode(), "content-type": b"application/json"}
    if put:
        batch = batch[:1]
        response = client.put(fill("/articles/{id}", batch[0]["id"]), content=json.dumps(batch[0]), headers=sent)
    else:
        response = client.post("/articles", content=json.dumps({"articles": batch}), headers=sent)
    check_answer(response, "PUT")
    event(f"{'PUT' if put else 'POST'}: {response.status_code}")
    if response.status_code != 200:
        assert response.status_code == 422, response.text
        return
    for article in batch:
        stored = client.get(fill("/articles/{id}", article["id"]))
        assert stored.status_code == 200, (article["id"], stored.text)
        got = stored.json()
        assert got["id"] == unicodedata.normalize("NFC", article["id"])
        assert got["body"] == article["body"].replace("\r\n", "\n").strip()
        assert all(got["body"][start:end] == p["text"] for p in got["passages"] for start, end in [p["offsets"]])
        assert got["url"] is None or urlsplit(got["url"]).scheme.lower() in ("http", "https"), got["url"]


# Searches near enough to valid that many are answered: any question, each parameter now and then.
search_params = st.fixed_dictionaries(
    {},
    optional={
        "k": mostly(st.integers(1, 100)),
        "mode": mostly(st.sampled_from(["dense", "lexical", "hybrid", ""])),
        "fusion": mostly(st.sampled_from(["weighted", "rrf"])),
        "weight": mostly(st.floats(0, 1)),
        "per_article": mostly(st.integers(0, 100)),
        "date_from": mostly(st.sampled_from(["2004-10-01", "2024-02-30", "", "1999-01-01"])),
        "date_to": mostly(st.sampled_from(["2012-12-31", "0000-00-00", ""])),
        "source": mostly(odd_text),
        "article_id": mostly(odd_text),
    },
)


@settings(FUZZ, max_examples=300)
@given(question=mostly(texts), params=search_params, post=st.booleans(), extra=headers)
def test_any_search_gets_hits_or_a_clear_error(
    client: TestClient, question: Any, params: dict[str, Any], post: bool, extra: dict[str, bytes]
) -> None:
    if post:
        sent = {**extra, "content-type": b"application/json"}
        response = client.post("/search", content=json.dumps({"query": question, **params}), headers=sent)
    else:
        pairs = [("q", question), *params.items()]
        query = "&".join(f"{k}={url_escape(v if isinstance(v, str) else json.dumps(v))}" for k, v in pairs)
        assume(len(query) < 60_000)
        response = client.get("/search?" + query, headers=extra)
    check_answer(response, "POST" if post else "GET")
    event(f"{'POST' if post else 'GET'}: {response.status_code}")
    if response.status_code == 200:
        hits = response.json()["hits"]
        k = params.get("k")
        assert len(hits) <= (k if isinstance(k, int) and not isinstance(k, bool) else 10)
        assert all(h["text"] and h["rank"] == n for n, h in enumerate(hits, 1)), hits
