"""The bad-input matrix over HTTP and the CLI: every case gets a clear 4xx or message, never a 5xx or a
traceback, and nothing already indexed is lost."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from semsearch.api.app import create_app
from semsearch.index.storage.generations import current_name
from semsearch.index.storage.store import open_index
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS, jsonl, write_corpus
from tests.test_cli import run

TOKEN = "matrix-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json"}
ARTICLE = {"id": "ok-1", "title": "T", "body": "A paragraph about grain exports through the port of Aktau."}
QUESTION = "press freedom and journalists"


def search(q: Any, **params: Any) -> tuple[str, str, dict[str, Any]]:
    return ("GET", "/search", {"params": {"q": q, **params}})


# (name, request, expected status, expected error type or None for a 200)
HTTP_CASES: list[tuple[str, tuple[str, str, dict[str, Any]], int, str | None]] = [
    ("empty query", search(""), 422, "invalid_request"),
    ("whitespace-only query", search(" \t\n "), 422, "invalid_request"),
    ("10,000-character query", search("energy " * 1429), 422, "invalid_request"),
    ("control characters only", search("\x07\x1b\x08"), 422, "invalid_request"),
    ("control characters inside", search("energy\x07 cooperation\x1b[31m"), 200, None),
    ("NUL byte", search("energy\x00cooperation"), 422, "invalid_request"),
    ("Chinese", search("中国 哈萨克斯坦 能源合作"), 200, None),
    ("Kazakh (Cyrillic)", search("Қазақстан мен Қытай энергетика"), 200, None),
    ("k=0", search("energy", k=0), 422, "invalid_request"),
    ("k=-1", search("energy", k=-1), 422, "invalid_request"),
    ("k=1000000", search("energy", k=1000000), 422, "invalid_request"),
    ("k=abc", search("energy", k="abc"), 422, "invalid_request"),
    ("malformed JSON", ("POST", "/search", {"content": b'{"query": ', "headers": JSON}), 422, "invalid_request"),
    ("wrong content type", ("POST", "/search", {"content": b"q=x", "headers": {"content-type": "text/plain"}}), 415,
     "unsupported_media_type"),
    ("oversized body", ("POST", "/articles", {"content": b"[" + b" " * (9 << 20) + b"]", "headers": {**JSON, **AUTH}}),
     413, "payload_too_large"),
    ("non-UTF-8 body", ("POST", "/search", {"content": b'{"query": "\xff\xfe energy"}', "headers": JSON}), 400,
     "invalid_request"),
    ("binary body", ("POST", "/articles", {"content": bytes(range(256)), "headers": {**JSON, **AUTH}}), 422,
     "invalid_request"),
    ("empty body", ("POST", "/articles", {"content": b"", "headers": {**JSON, **AUTH}}), 422, "invalid_request"),
    ("empty batch", ("POST", "/articles", {"json": {"articles": []}, "headers": AUTH}), 422, "invalid_request"),
    ("article without text", ("POST", "/articles", {"json": {"articles": [{**ARTICLE, "body": " "}]}, "headers": AUTH}),
     422, "invalid_article"),
    ("duplicate ids in one batch", ("POST", "/articles", {"json": {"articles": [ARTICLE, ARTICLE]}, "headers": AUTH}),
     422, "invalid_article"),
    ("path traversal in a posted id",
     ("POST", "/articles", {"json": {"articles": [{**ARTICLE, "id": "../../etc/passwd"}]}, "headers": AUTH}), 422,
     "invalid_article"),
    ("path traversal in a URL id", ("PUT", "/articles/..%2F..%2Fetc%2Fpasswd",
     {"json": {**ARTICLE, "id": "../../etc/passwd"}, "headers": AUTH}), 422, "invalid_article"),
    ("unknown id to delete", ("DELETE", "/articles/no-such-article", {"headers": AUTH}), 404, "article_not_found"),
    ("unknown id to read", ("GET", "/articles/no-such-article", {}), 404, "not_found"),
    ("write without a token", ("POST", "/articles", {"json": {"articles": [ARTICLE]}}), 401, "unauthorized"),
    ("write with a wrong token",
     ("DELETE", "/articles/" + str(GV_RECORDS[0]["_id"]), {"headers": {"Authorization": "Bearer nope"}}), 403,
     "forbidden"),
    ("bad date in an article", ("POST", "/articles", {"json": {"articles": [{**ARTICLE, "date": "yesterday"}]},
     "headers": AUTH}), 422, "invalid_article"),
    ("bad date filter", search("energy", date_from="2024-02-30"), 422, "invalid_filter"),
    ("lone surrogate in a body", ("POST", "/articles", {"content": b'{"articles": [{"id": "s-1", "body": "text '
     b'\\ud800 more"}]}', "headers": {**JSON, **AUTH}}), 422, "invalid_article"),
    ("a number as a date", ("POST", "/articles", {"json": {"articles": [{**ARTICLE, "date": 1e300}]},
     "headers": AUTH}), 422, "invalid_request"),
]  # fmt: skip


@pytest.fixture(scope="module")
def matrix_settings(gv_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("matrix")
    shutil.copytree(gv_settings.index, root / "index")
    return gv_settings.replace(index=root / "index", api_token=TOKEN, reload_seconds=0)


@pytest.fixture(scope="module")
def client(matrix_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(matrix_settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def before(client: TestClient) -> dict[str, Any]:
    return {"stats": client.get("/stats").json(), "hits": client.get("/search", params={"q": QUESTION}).json()["hits"]}


@pytest.mark.parametrize(("name", "request_", "status", "kind"), HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_http_bad_input(
    client: TestClient, before: dict[str, Any], name: str, request_: tuple[str, str, dict[str, Any]], status: int,
    kind: str | None,
) -> None:  # fmt: skip
    method, path, options = request_
    response = client.request(method, path, **options)
    assert response.status_code == status, response.text
    if kind is not None:
        error = response.json()["error"]
        assert error["type"] == kind and len(error["message"]) > 10
    # Nothing already indexed is lost, and the same question gets the same answer.
    assert client.get("/stats").json()["generation"] == before["stats"]["generation"]
    assert client.get("/search", params={"q": QUESTION}).json()["hits"] == before["hits"]


@pytest.mark.parametrize(
    ("field", "kind", "says"),
    [
        *[(f, "invalid_article", f"{f} holds a lone surrogate (U+D800)") for f in ("body", "title", "source", "url")],
        ("tags", "invalid_article", "tags holds a lone surrogate (U+D800)"),  # a field kept as metadata
        ("id", "invalid_request", "id: Input should be a valid string"),  # refused by the schema itself
    ],
)
def test_http_a_field_that_is_not_unicode_text_is_named(
    client: TestClient, before: dict[str, Any], field: str, kind: str, says: str
) -> None:
    body = json.dumps({"articles": [{**ARTICLE, field: "text \ud800 more"}]}).encode()  # the JSON escape \ud800
    response = client.post("/articles", content=body, headers={**JSON, **AUTH})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == kind
    assert says in response.json()["error"]["message"]
    assert client.get("/stats").json()["generation"] == before["stats"]["generation"]


def test_the_matrix_is_wide_enough() -> None:
    assert len(HTTP_CASES) + len(CLI_CASES) >= 25


@pytest.fixture(scope="module")
def cli_index(gv_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-matrix")
    shutil.copytree(gv_settings.index, root / "index")
    write_corpus(
        root / "inputs",
        {
            "empty/empty.txt": "",
            "binary/blob.txt": bytes(range(256)) * 8,
            "dupes/d.jsonl": jsonl(
                [{"_id": "dup", "text": "First text about grain."}, {"_id": "dup", "text": "Second."}]
            ),
            "escape/e.jsonl": jsonl([{"_id": "../../etc/passwd", "text": "Escaping text about nothing at all."}]),
            "latin1/l.txt": "Caf\xe9 owners\n\nThe caf\xe9 owners of Almaty protest against new rents.".encode(
                "latin-1"
            ),
        },
    )
    return root


# (name, arguments (INPUTS is the inputs folder), expected exit code, text the output must hold)
CLI_CASES: list[tuple[str, list[str], int, str]] = [
    ("ask: empty question", ["ask", ""], 2, "The question is empty"),
    ("ask: whitespace-only question", ["ask", "  \t "], 2, "The question is empty"),
    ("ask: k=0", ["ask", "energy", "-k", "0"], 2, "0 is not in the range"),
    ("ask: k=abc", ["ask", "energy", "-k", "abc"], 2, "is not a valid integer"),
    ("ask: k=1000000", ["ask", "energy", "-k", "1000000"], 2, "not in the range"),
    ("ask: impossible date", ["ask", "energy", "--date-from", "2024-13-01"], 2, "date"),
    ("ask: Kazakh question", ["ask", "Қазақстан мен Қытай энергетика", "-k", "2"], 0, "1. ["),
    ("index: empty file", ["index", "INPUTS/empty"], 1, "empty file"),
    ("index: binary file", ["index", "INPUTS/binary"], 1, "binary file"),
    ("index: no such path", ["index", "INPUTS/nowhere"], 2, "nowhere"),
    ("index: path escape in an id", ["index", "INPUTS/escape"], 1, "path escape"),
    ("delete: unknown id", ["delete", "no-such-article"], 1, "No article with id 'no-such-article'"),
    ("delete: path escape", ["delete", "../../etc/passwd"], 1, "No article with id"),
]


@pytest.mark.parametrize(("name", "args", "code", "says"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(cli_index: Path, name: str, args: list[str], code: int, says: str) -> None:
    index = cli_index / "index"
    generation = current_name(index)
    result = run("semsearch", *[a.replace("INPUTS", str(cli_index / "inputs")) for a in args], index=index)
    assert result.returncode == code, result.stderr
    assert says in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert current_name(index) == generation  # no write happened, nothing was lost


def test_cli_writes_that_skip_records_keep_the_rest(cli_index: Path, gv_settings: Settings, tmp_path: Path) -> None:
    index = tmp_path / "index"
    shutil.copytree(gv_settings.index, index)
    inputs = cli_index / "inputs"
    result = run("semsearch", "index", str(inputs / "dupes"), str(inputs / "latin1"), index=index)
    assert result.returncode == 0, result.stderr
    assert "duplicate article id 'dup'" in result.stderr and "not valid UTF-8" in result.stderr
    assert "Added 2," in result.stdout
    stored = open_index(index)
    try:
        ids = set(stored.article_ids)
    finally:
        stored.close()
    assert {str(r["_id"]) for r in GV_RECORDS[:4]} | {"dup", "l.txt"} == ids


def test_cli_files_whose_names_cannot_be_ids_are_skipped_and_the_rest_indexed(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", {"good.txt": "Grain\n\nGrain exports through the port of Aktau."})
    for name in (b"caf\xe9.txt", b"new\nline.txt", b" lead.md"):
        (corpus / os.fsdecode(name)).write_bytes(b"Title\n\nA body that is never read: the name cannot be an id.")
    result = run("semsearch", "index", str(corpus), index=tmp_path / "index")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "3 skipped" in result.stdout
    assert "caf\\xe9.txt: the file name is not valid UTF-8 (byte 0xE9)" in result.stderr
    assert "new\\nline.txt: the file name cannot be an article id: the id holds a control character" in result.stderr
    assert " lead.md: the file name cannot be an article id: the id starts or ends with whitespace" in result.stderr
    stored = open_index(tmp_path / "index")
    try:
        assert stored.article_ids == ["good.txt"]
    finally:
        stored.close()
