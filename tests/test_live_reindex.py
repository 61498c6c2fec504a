"""Two processes: a real server answers queries without one error while `semsearch index` updates its index,
then serves the new generation without a restart."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx

from semsearch.benchmarks.server import serve_index
from semsearch.index.storage.generations import current_name
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS, jsonl, start_indexer, write_corpus

QUERIES = ("press freedom", "elections", "the Caspian ferry to Baku", "music festival", "water shortage")


def test_queries_keep_answering_during_a_reindex(gv_settings: Settings, tmp_path: Path) -> None:
    index = tmp_path / "index"
    shutil.copytree(gv_settings.index, index)
    before = current_name(index)
    ferry = {
        "_id": "wire-ferry",
        "title": "Caspian ferry link opens",
        "text": "A new ferry line across the Caspian Sea links the ports of Aktau and Baku, cutting freight "
        "times for grain and steel between Kazakhstan and Azerbaijan.",
    }
    corpus = write_corpus(tmp_path / "more", {"more.jsonl": jsonl([*GV_RECORDS[12:16], ferry])})
    statuses: list[int] = []
    with serve_index(index, {"SEMSEARCH_RELOAD_SECONDS": "0.2"}) as url, httpx.Client(base_url=url, timeout=30) as http:
        indexer = start_indexer(index, [str(corpus)])
        deadline = time.monotonic() + 600
        n = 0
        while indexer.poll() is None or http.get("/stats").json()["generation"] == before:
            assert time.monotonic() < deadline, "the server never served the new generation"
            statuses.append(http.get("/search", params={"q": QUERIES[n % len(QUERIES)], "k": 5}).status_code)
            n += 1
        assert indexer.returncode == 0
        top = http.get("/search", params={"q": "ferry from Aktau to Baku", "k": 1}).json()["hits"][0]
        stats = http.get("/stats").json()
    assert statuses and set(statuses) == {200}, f"{len(statuses)} queries, statuses {set(statuses)}"
    assert len(statuses) >= 10
    assert top["article_id"] == "wire-ferry"
    assert stats["generation"] == current_name(index) and stats["last_write"]["added"] == 5
