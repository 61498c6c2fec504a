"""/metrics through TestClient: each app its own registry; requests by route template, search stages, batches,
writes and the index served, reload errors included."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from semsearch.api.app import create_app
from semsearch.settings import Settings

TOKEN = "metrics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def requests(samples: Samples, method: str, route: str, status: int) -> float:
    return samples.get(
        ("semsearch_http_requests_total", (("method", method), ("route", route), ("status", str(status)))), 0
    )


@pytest.fixture
def settings(gv_settings: Settings, tmp_path: Path) -> Settings:
    shutil.copytree(gv_settings.index, tmp_path / "index")
    return gv_settings.replace(index=tmp_path / "index", api_token=TOKEN, reload_seconds=0.1)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_each_app_counts_only_its_own_requests(gv_settings: Settings) -> None:
    one, two = TestClient(create_app(gv_settings)), TestClient(create_app(gv_settings))  # no lifespan: no index
    for _ in range(3):
        one.get("/metrics")
    assert requests(scrape(one), "GET", "/metrics", 200) == 3
    assert requests(scrape(two), "GET", "/metrics", 200) == 0
    assert scrape(two)["semsearch_index_loaded", ()] == 0


def test_metrics_follow_searches_writes_and_the_index(client: TestClient, settings: Settings) -> None:
    assert client.get("/search", params={"q": "journalism festival"}).status_code == 200
    assert client.post("/search", json={"query": "election date", "mode": "lexical"}).status_code == 200
    article = {"id": "wire-9", "title": "Ferry", "body": "A ferry line across the Caspian Sea opens this week."}
    assert client.put("/articles/wire-9", json=article, headers=AUTH).status_code == 200
    assert client.get("/articles/wire-9").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    client.request("BREW", "/health")
    assert client.head("/articles/wire-9").status_code == 200
    stats = client.get("/stats").json()

    found = scrape(client)
    assert requests(found, "GET", "/search", 200) == 1 and requests(found, "POST", "/search", 200) == 1
    assert requests(found, "PUT", "/articles/{article_id:path}", 200) == 1
    assert requests(found, "GET", "/articles/{article_id:path}", 200) == 1
    assert requests(found, "HEAD", "/articles/{article_id:path}", 200) == 1  # the GET route's template
    assert requests(found, "GET", "(unmatched)", 404) == 1  # a path no route matched is not a label
    assert any(name == "semsearch_http_requests_total" and ("method", "OTHER") in labels for name, labels in found)
    assert found["semsearch_http_request_duration_seconds_count", (("method", "GET"), ("route", "/search"))] == 1
    # Two searches, each its own batch: the dense one encoded, both retrieved and ranked.
    assert found["semsearch_search_batch_size_count", ()] == 2 and found["semsearch_search_batch_size_sum", ()] == 2
    assert found["semsearch_search_stage_duration_seconds_count", (("stage", "encode"),)] == 1
    assert found["semsearch_search_stage_duration_seconds_count", (("stage", "retrieve"),)] == 2
    assert found["semsearch_search_stage_duration_seconds_count", (("stage", "rank"),)] == 2
    assert found["semsearch_write_duration_seconds_count", ()] == 1 and found["semsearch_writes_in_progress", ()] == 0
    # The index of four articles, and the write's own segment: too small to be merged yet.
    assert found["semsearch_index_loaded", ()] == 1 and found["semsearch_index_segments", ()] == 2
    assert len(stats["segments"]) == 2 and found["semsearch_index_deleted_passages", ()] == 0
    assert found["semsearch_index_generation", (("name", stats["generation"]),)] == 1
    assert found["semsearch_index_articles", ()] == stats["articles"] == 5
    assert found["semsearch_index_passages", ()] == stats["passages"]
    assert found["semsearch_index_reload_errors_total", ()] == 0

    # A current generation that cannot be loaded: the old one goes on serving, and the failures are counted.
    pointer = settings.index / "CURRENT.test.tmp"
    pointer.write_text("gen-missing\n")
    os.replace(pointer, settings.index / "CURRENT")
    deadline = time.monotonic() + 300
    while (found := scrape(client))["semsearch_index_reload_errors_total", ()] < 1:
        assert time.monotonic() < deadline, "the failed reload was not counted"
        time.sleep(0.1)
    assert found["semsearch_index_generation", (("name", stats["generation"]),)] == 1
