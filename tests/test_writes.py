"""HTTP writes behind a bearer token, and a running app that follows new generations on disk."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from semsearch.api.app import create_app
from semsearch.index.model.embedder import Embedder
from semsearch.index.reading.readers import article_from_record
from semsearch.index.storage.generations import current_generation
from semsearch.index.storage.manifest import MANIFEST, Manifest
from semsearch.index.storage.segment import VECTORS
from semsearch.index.writing.builder import write_articles
from semsearch.index.writing.merging import optimize
from semsearch.search.live import LiveSearcher
from semsearch.settings import Settings
from tests.test_api import assert_error

TOKEN = "test-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NEW = {
    "id": "wire-001",
    "title": "Caspian ferry link opens",
    "body": "A new ferry line across the Caspian Sea links the ports of Aktau and Baku, cutting freight times "
    "for grain and steel between Kazakhstan and Azerbaijan.\n\nOfficials expect two sailings a week.",
    "date": "2026-11-20",
    "source": "Wire",
}


@pytest.fixture
def settings(gv_settings: Settings, tmp_path: Path) -> Settings:
    shutil.copytree(gv_settings.index, tmp_path / "index")
    return gv_settings.replace(index=tmp_path / "index", api_token=TOKEN, reload_seconds=0.1)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_writes_need_the_token(client: TestClient, settings: Settings) -> None:
    missing = client.post("/articles", json={"articles": [NEW]})
    assert_error(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_error(
        client.post("/articles", json={"articles": [NEW]}, headers={"Authorization": "Basic abc"}), 401, "unauthorized"
    )
    assert_error(client.delete("/articles/x", headers={"Authorization": "Bearer wrong"}), 403, "forbidden")
    assert_error(client.put("/articles/wire-001", json=NEW, headers={"Authorization": "Bearer "}), 401, "unauthorized")
    with TestClient(create_app(settings.replace(api_token=""))) as closed:
        assert "SEMSEARCH_API_TOKEN" in assert_error(
            closed.post("/articles", json={"articles": [NEW]}, headers=AUTH), 403, "forbidden"
        )
        assert closed.get("/search", params={"q": "ferry"}).status_code == 200  # reads stay open
    assert client.get("/articles/wire-001").status_code == 404


def test_post_put_delete_round_trip(client: TestClient) -> None:
    added = client.post(
        "/articles", json={"articles": [NEW, {**NEW, "id": "wire-002", "title": "Other"}]}, headers=AUTH
    )
    assert added.status_code == 200, added.text
    body = added.json()
    assert (body["added"], body["updated"], body["removed"], body["articles"]) == (2, 0, 0, 6)
    assert body["embedded"] == 1 and body["reused"] == 1  # wire-002 has the same text: embedded once
    hits = client.get("/search", params={"q": "ferry between Aktau and Baku", "k": 2}).json()["hits"]
    assert hits[0]["article_id"] in {"wire-001", "wire-002"}
    assert client.get("/stats").json()["generation"] == body["generation"]

    replaced = client.put("/articles/wire-001", json={**NEW, "title": "Caspian ferry link delayed"}, headers=AUTH)
    assert replaced.status_code == 200 and replaced.json()["updated"] == 1
    assert replaced.json()["embedded"] == 0  # the title changed, the embedded paragraph text did not
    assert client.get("/articles/wire-001").json()["title"] == "Caspian ferry link delayed"
    assert_error(client.put("/articles/wire-009", json=NEW, headers=AUTH), 422, "invalid_article")

    removed = client.delete("/articles/wire-001", headers=AUTH)
    assert removed.status_code == 200 and removed.json()["removed"] == 1
    assert_error(client.get("/articles/wire-001"), 404, "not_found")
    assert_error(client.delete("/articles/wire-001", headers=AUTH), 404, "article_not_found")
    stats = client.get("/stats").json()
    assert stats["articles"] == 5 and stats["last_write"]["removed"] == 1 and stats["reload_error"] is None


def test_running_app_follows_a_write_from_another_writer(
    client: TestClient, settings: Settings, embedder: Embedder
) -> None:
    before = client.get("/stats").json()["generation"]
    summary = write_articles(settings, [article_from_record(NEW, "x", "test")], embedder=embedder)
    assert summary.generation != before
    deadline = time.monotonic() + 300  # a reload is quick; a busy machine may still take its time
    while client.get("/stats").json()["generation"] != summary.generation:
        assert time.monotonic() < deadline, "the app did not pick up the new generation"
        time.sleep(0.1)
    assert client.get("/search", params={"q": "Caspian ferry", "k": 1}).json()["hits"][0]["article_id"] == "wire-001"


def test_a_corrupt_new_generation_leaves_the_old_one_serving(
    client: TestClient, settings: Settings, embedder: Embedder
) -> None:
    served = client.get("/stats").json()["generation"]
    hits = client.get("/search", params={"q": "journalism festival", "k": 3}).json()["hits"]
    # A commit naming a damaged segment becomes current (another tool, a bad disk): write it beside the index,
    # truncate a file of its new segment, then move the segment and the commit in and switch CURRENT, so the app
    # never sees them whole.
    shadow = settings.replace(index=settings.index.parent / "shadow", merge=False)
    shutil.copytree(settings.index, shadow.index)
    write_articles(shadow, [article_from_record(NEW, "x", "test")], embedder=embedder)
    damaged = current_generation(shadow.index)
    names = [s["name"] for s in Manifest.from_file(damaged / MANIFEST).segments]
    new = [n for n in names if not (settings.index / n).exists()]
    assert len(new) == 1 and len(names) == 2  # the old segment, shared, and the write's own
    vectors = shadow.index / new[0] / VECTORS
    vectors.write_bytes(vectors.read_bytes()[:64])
    shutil.move(shadow.index / new[0], settings.index / new[0])
    shutil.move(damaged, settings.index / damaged.name)
    pointer = settings.index / "CURRENT.test.tmp"
    pointer.write_text(damaged.name + "\n")
    os.replace(pointer, settings.index / "CURRENT")
    deadline = time.monotonic() + 300  # a reload is quick; a busy machine may still take its time
    while (stats := client.get("/stats").json())["reload_error"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert str(settings.index / new[0] / VECTORS) in stats["reload_error"] and stats["generation"] == served
    assert client.get("/search", params={"q": "journalism festival", "k": 3}).json()["hits"] == hits
    assert_error(client.get("/articles/wire-001"), 404, "not_found")


def test_requests_in_flight_keep_their_generation(settings: Settings, embedder: Embedder) -> None:
    """A request keeps the commit it began with, and every segment of it, even when writes and a merge have
    replaced them meanwhile; the commit is closed once the request is done, and its segments, unheld, are then
    removed by the next write's clean-up."""
    live = LiveSearcher(settings, embedder)
    assert live.refresh()
    with live.use() as old:
        before = old.search("festival", k=3)
        segment = old.index.segments[0]
        write_articles(settings, [article_from_record(NEW, "x", "test")], embedder=embedder)
        assert optimize(settings)  # one new segment: the commit no longer names the one this request reads
        assert segment.name not in {
            s["name"] for s in Manifest.from_file(current_generation(settings.index) / MANIFEST).segments
        }
        assert live.refresh() and live.generation != old.index.generation.name
        assert segment.folder.is_dir()  # held by this request, so clean-up left it
        assert old.search("festival", k=3) == before  # still open: closed only when this request is done
        assert old.article("wire-001") is None
        with live.use() as new:
            assert new.article("wire-001") is not None
    with pytest.raises(RuntimeError, match="closed"):  # the request's commit is closed, and so is its segment
        old.index.passages(old.index.stored_vectors()[0][:1].tolist())
    with pytest.raises(RuntimeError, match="closed"):
        segment.sql("SELECT count(*) FROM articles")
    assert segment.folder.is_dir()  # nothing removes a folder but a writer's clean-up
    write_articles(settings, [article_from_record({**NEW, "id": "wire-002"}, "x", "test")], embedder=embedder)
    assert not segment.folder.exists()
    live.close()
