"""Against a real uvicorn process on loopback: the contract, and schemathesis over /openapi.json."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from semsearch.benchmarks.loadgen import run_load
from semsearch.benchmarks.server import free_port

CK = "china-kazakhstan-cooperation.txt"
# No 5xx, and status, content type and body as the schema documents them.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_search_over_a_socket(live_server: str) -> None:
    response = httpx.get(f"{live_server}/search", params={"q": "energy cooperation in Central Asia"}, timeout=30)
    assert response.status_code == 200
    assert response.json()["hits"][0]["article_id"] == CK
    bad = httpx.get(f"{live_server}/search", params={"q": " ", "k": 5}, timeout=30)
    assert bad.status_code == 422 and bad.json()["error"]["type"] == "invalid_request"
    assert httpx.get(f"{live_server}/openapi.json", timeout=30).json()["paths"].keys() >= {"/search", "/health"}


def test_api_conforms_to_its_schema(live_server: str) -> None:
    """Generated requests for every operation: no 5xx, and every response matches the schema."""
    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/search", "/articles/{article_id}", "/health", "/stats"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(timeout=30, checks=CHECKS)

        check()


def test_the_load_generator_counts_answers_and_failures(live_server: str) -> None:
    done = run_load(live_server, ["energy cooperation", "   "], concurrency=2, max_requests=6, max_seconds=60, k=3)
    assert len(done.latencies_ms) == 6 and done.failures == {"HTTP 422": 3}  # the blank question, every other time
    closed = run_load(f"http://127.0.0.1:{free_port()}", ["energy"], concurrency=2, max_requests=4, max_seconds=60, k=3)
    assert closed.failures == {"ConnectionRefusedError": 4}
