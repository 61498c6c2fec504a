"""The request log: one record per request with its id, route template, status and duration; the id in the
response's `x-request-id`, an unexpected error's 500 and traceback included; the question only with
`log_queries`. And the JSON formatter's lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from semsearch.api.app import create_app
from semsearch.api.logs import ACCESS_LOGGER, REQUEST_ID, JsonFormatter, request_id
from semsearch.settings import Settings

QUESTION = "zanzibar clove harvest"


@pytest.fixture(scope="module", params=[False, True], ids=["quiet", "log-queries"])
def client(request: pytest.FixtureRequest, gv_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(gv_settings.replace(log_queries=request.param))) as test_client:
        yield test_client


class JsonLines(logging.Handler):
    """Each record as the server's JSON formatter writes it, formatted as it is logged (the request id is read
    from the context then)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.entries: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append(json.loads(self.format(record)))


def access_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [r.fields for r in caplog.records if r.name == ACCESS_LOGGER]  # type: ignore[attr-defined]


def test_one_record_per_request_and_the_question_only_when_asked(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    logging_queries: bool = client.app.state.settings.log_queries  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        got = client.get("/search", params={"q": QUESTION}, headers={"x-request-id": "abc-123"})
        posted = client.post("/search", json={"query": QUESTION, "k": 2})
        missing = client.get(f"/articles/{QUESTION}")
    assert got.headers["x-request-id"] == "abc-123"
    records = access_records(caplog)
    assert [(r["method"], r["route"], r["status"]) for r in records] == [
        ("GET", "/search", 200),
        ("POST", "/search", 200),
        ("GET", "/articles/{article_id:path}", 404),
    ]
    assert [r["request_id"] for r in records] == [
        "abc-123",
        posted.headers["x-request-id"],
        missing.headers["x-request-id"],
    ]
    assert all(isinstance(r["duration_ms"], float) and r["duration_ms"] >= 0 for r in records)
    logged = " ".join(r.getMessage() + json.dumps(getattr(r, "fields", {})) for r in caplog.records)
    if logging_queries:
        assert [r.get("query") for r in records] == [QUESTION, QUESTION, None]
    else:
        assert "zanzibar" not in logged and all("query" not in r for r in records)


def test_an_unexpected_error_keeps_its_request_id(gv_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """Before: Starlette answered it outside every middleware, so the 500 had no `x-request-id` and the
    traceback's record no request id."""
    app = create_app(gv_settings)

    @app.get("/boom")
    def boom() -> None:
        raise ZeroDivisionError("boom")

    lines = JsonLines()
    logging.getLogger("semsearch.api").addHandler(lines)
    try:
        with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
            response = TestClient(app, raise_server_exceptions=False).get("/boom", headers={"x-request-id": "boom-1"})
    finally:
        logging.getLogger("semsearch.api").removeHandler(lines)
    assert response.status_code == 500 and response.headers["x-request-id"] == "boom-1"
    assert response.json()["error"]["type"] == "internal_error" and "boom" not in response.text
    failures = [e for e in lines.entries if e["message"] == "unexpected error"]
    assert len(failures) == 1 and failures[0]["request_id"] == "boom-1"  # logged once, with the id
    assert "ZeroDivisionError: boom" in failures[0]["exception"]
    assert [(r["request_id"], r["route"], r["status"]) for r in access_records(caplog)] == [("boom-1", "/boom", 500)]


@pytest.mark.parametrize(
    ("given", "kept"),
    [(b"abc-123", True), (b"4f9c1e2a.b_c:d", True), (b"x" * 64, True), (b"x" * 65, False), (b"a b", False),
     (b"<script>", False), (b"caf\xc3\xa9", False), (b"", False), (None, False)],
)  # fmt: skip
def test_a_client_request_id_is_kept_only_when_short_and_safe(given: bytes | None, kept: bool) -> None:
    made = request_id(given)
    if kept:
        assert given is not None and made == given.decode()
    else:
        assert len(made) == 32 and int(made, 16) >= 0


def test_json_lines_carry_the_request_id_and_fields() -> None:
    record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 1, "GET /search 200", None, None)
    record.fields = {"method": "GET", "route": "/search", "status": 200, "duration_ms": 1.5}
    token = REQUEST_ID.set("req-1")
    try:
        line = JsonFormatter().format(record)
    finally:
        REQUEST_ID.reset(token)
    entry = json.loads(line)
    assert "\n" not in line and entry["request_id"] == "req-1" and entry["level"] == "info"
    assert {k: entry[k] for k in ("method", "route", "status", "duration_ms")} == record.fields
    assert (
        entry["logger"] == ACCESS_LOGGER and entry["message"] == "GET /search 200" and entry["time"].endswith("+00:00")
    )
