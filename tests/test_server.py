"""Against a real uvicorn process on loopback: the contract, and schemathesis over /openapi.json."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)

from semsearch.benchmarks.loadgen import run_load
from semsearch.benchmarks.server import free_port, serve_index
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS

CK = "china-kazakhstan-cooperation.txt"
# No 5xx, and status, content type and body as the schema documents them.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# And across calls: what a write answered 200 for is there to read (until it is deleted), and gone after.
STATEFUL_CHECKS = [*CHECKS, ensure_resource_availability, use_after_free]
TOKEN = "stateful-token-1234"
RUN = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def writable_server(gv_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server with writes on, over a copy of the small index."""
    root = tmp_path_factory.mktemp("writable")
    shutil.copytree(gv_settings.index, root / "index")
    with serve_index(root / "index", {"SEMSEARCH_API_TOKEN": TOKEN, "SEMSEARCH_RELOAD_SECONDS": "0"}) as base:
        yield base


def test_search_over_a_socket(live_server: str) -> None:
    response = httpx.get(f"{live_server}/search", params={"q": "energy cooperation in Central Asia"}, timeout=30)
    assert response.status_code == 200
    assert response.json()["hits"][0]["article_id"] == CK
    bad = httpx.get(f"{live_server}/search", params={"q": " ", "k": 5}, timeout=30)
    assert bad.status_code == 422 and bad.json()["error"]["type"] == "invalid_request"
    assert httpx.get(f"{live_server}/openapi.json", timeout=30).json()["paths"].keys() >= {"/search", "/health"}


def test_head_over_a_socket(live_server: str) -> None:
    """uvicorn sends no body for HEAD itself; the app answers it as the GET, with the GET's length."""
    for path in ("/health", "/articles/no-such-id", "/docs"):
        got, head = httpx.get(live_server + path, timeout=30), httpx.head(live_server + path, timeout=30)
        assert (head.status_code, head.content) == (got.status_code, b"")
        assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))


def test_api_conforms_to_its_schema(live_server: str) -> None:
    """Generated requests for every operation: no 5xx, and every response matches the schema."""
    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/search", "/articles/{article_id}", "/health", "/stats"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(RUN, max_examples=50)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(timeout=30, checks=CHECKS)

        check()


# Writes near enough to valid that many succeed, mixed into what schemathesis makes from the schema (whose ids
# and bodies are almost never valid). Their ids hold what a URL must escape: `%`, `?`, `#`, spaces, `/`.
plain_ids = st.text(st.sampled_from("ab-_.é中/%?# +"), min_size=1, max_size=20).filter(lambda s: s == s.strip())
plain_articles = st.fixed_dictionaries(
    {"id": plain_ids.filter(lambda s: ".." not in s.split("/") and not s.startswith("/")),
     "body": st.text(st.sampled_from("ferry Caspian 渡轮\n"), min_size=1, max_size=80).filter(str.strip)},
    optional={"date": st.sampled_from(["2024-05-31", "2024-05-31T10:00:00Z"]), "title": st.text(max_size=20),
              "url": st.sampled_from(["https://example.org/a", "javascript:alert(1)"])},
)  # fmt: skip


def test_writes_are_read_back_then_deleted_statefully(writable_server: str) -> None:
    """Schemathesis follows the OpenAPI links of each write (POST or PUT, then GET and DELETE of the id it
    wrote, then GET again), with the token: what was written is read back, and is gone once deleted."""
    # Only the article operations: searches (fuzzed on their own above) would take the steps the chain needs.
    schema = schemathesis.openapi.from_url(f"{writable_server}/openapi.json").include(path_regex=r"^/articles")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    seen: list[tuple[str, int]] = []
    written: dict[str, str | None] = {}  # id -> the body text it was last written with (None: not followed)
    read_back: list[str] = []
    # Each scenario starts from the same index (hypothesis replays scenarios and needs the same answers).
    fields = ("id", "title", "body", "date", "source", "url", "author")
    originals = []
    for record in GV_RECORDS[:4]:
        stored = httpx.get(f"{writable_server}/articles/{record['_id']}", timeout=30).json()
        originals.append({**stored["metadata"], **{name: stored[name] for name in fields}})

    @schema.hook
    def before_generate_body(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        if context.operation.method.upper() == "POST" and context.operation.path == "/articles":
            return strategy | st.lists(plain_articles, min_size=1, max_size=2).map(lambda a: {"articles": a})
        return strategy

    class Writes(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": auth, "timeout": 60}

        def teardown(self) -> None:
            restored = httpx.post(f"{writable_server}/articles", json={"articles": originals}, headers=auth, timeout=60)
            assert restored.status_code == 200, restored.text
            for article_id in set(written) - {a["id"] for a in originals}:
                httpx.delete(f"{writable_server}/articles/{quote(article_id, safe='')}", headers=auth, timeout=60)
            written.clear()
            super().teardown()

        def after_call(self, response: Any, case: schemathesis.Case) -> None:
            super().after_call(response, case)
            step = f"{case.method} {case.path}"
            seen.append((step, response.status_code))
            if response.status_code != 200:
                return
            article_id = unquote((case.path_parameters or {}).get("article_id", ""))  # schemathesis escapes it
            if step == "POST /articles":
                for article in case.body["articles"]:
                    plain = isinstance(article.get("body"), str) and not {"text", "content"} & set(article)
                    written[article["id"]] = article["body"].strip() if plain else None
            elif step in ("PUT /articles/{article_id}", "DELETE /articles/{article_id}"):
                written[article_id] = None  # touched (to undo), but not followed
            elif step == "GET /articles/{article_id}" and written.get(article_id):
                assert response.json()["body"] == written[article_id], (article_id, response.text)
                read_back.append(article_id)

        def validate_response(self, response: Any, case: schemathesis.Case, *args: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=STATEFUL_CHECKS, recorder=self.recorder)

    Writes.run(settings=settings(RUN, max_examples=25, stateful_step_count=6))
    # The run reached the chain it is for: writes that succeeded, reads of what they wrote, deletes.
    for step in ("POST /articles", "GET /articles/{article_id}", "DELETE /articles/{article_id}"):
        assert (step, 200) in seen, seen
    assert read_back, seen


def test_the_load_generator_counts_answers_and_failures(live_server: str) -> None:
    done = run_load(live_server, ["energy cooperation", "   "], concurrency=2, max_requests=6, max_seconds=60, k=3)
    assert len(done.latencies_ms) == 6 and done.failures == {"HTTP 422": 3}  # the blank question, every other time
    closed = run_load(f"http://127.0.0.1:{free_port()}", ["energy"], concurrency=2, max_requests=4, max_seconds=60, k=3)
    assert closed.failures == {"ConnectionRefusedError": 4}
