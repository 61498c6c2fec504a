"""Micro-batching: concurrent queries share one encoding call and get the same answers as alone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from semsearch.errors import EmptyQueryError
from semsearch.index.model.embedder import Embedder
from semsearch.index.writing.builder import build_index
from semsearch.search.batcher import QueryBatcher
from semsearch.search.filters import Filters
from semsearch.search.live import LiveSearcher
from semsearch.search.searcher import SearchOptions
from semsearch.settings import Settings
from tests.helpers import GV_RECORDS, jsonl, write_corpus

QUESTIONS = ["press freedom", "elections and protests", "energy cooperation", "music festival", "water", "bloggers"]


def test_concurrent_queries_are_batched_and_answered_as_alone(
    gv_settings: Settings, fp32_embedder: Embedder, tmp_path: Path
) -> None:
    # fp32: int8 activations are quantised per batch, so a query's int8 vector depends on its batch-mates.
    settings = gv_settings.replace(index=tmp_path / "index", backend="torch-fp32")
    corpus = write_corpus(tmp_path / "c", {"a.jsonl": jsonl(GV_RECORDS[:4])})
    build_index([corpus], settings, embedder=fp32_embedder)
    live = LiveSearcher(settings, fp32_embedder)
    live.refresh()
    with live.use() as searcher:
        alone = {q: [h.passage_id for h in searcher.search(q, k=3)] for q in QUESTIONS}
        options = searcher.defaults
    batcher = QueryBatcher(live, wait_ms=20)
    start = threading.Barrier(len(QUESTIONS) * 3)
    got: dict[int, list[int]] = {}

    def ask(n: int) -> None:
        start.wait()
        got[n] = [h.passage_id for h in batcher.search(QUESTIONS[n % len(QUESTIONS)], 3, options)]

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(QUESTIONS) * 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(got[n] == alone[QUESTIONS[n % len(QUESTIONS)]] for n in got) and len(got) == 18
    assert batcher.queries == 18 and batcher.batches < 18  # some queries shared a model call
    # One bad request in a batch fails alone; a filter applies to its own request only.
    with pytest.raises(EmptyQueryError):
        batcher.search("  ", 3, options)
    only = str(GV_RECORDS[2]["_id"])
    filtered = batcher.search("festival", 3, options.replace(filters=Filters(article_id=only)))
    assert {h.article_id for h in filtered} == {only}
    batcher.close()
    live.close()


def test_a_caller_that_gives_up_does_not_stop_the_batcher(
    gv_settings: Settings, fp32_embedder: Embedder, tmp_path: Path
) -> None:
    """A cancelled future (an HTTP client that went away) is skipped or answered into the void, never fatal."""
    settings = gv_settings.replace(index=tmp_path / "index", backend="torch-fp32")
    build_index([write_corpus(tmp_path / "c", {"a.jsonl": jsonl(GV_RECORDS[:4])})], settings, embedder=fp32_embedder)
    live = LiveSearcher(settings, fp32_embedder)
    live.refresh()
    batcher = QueryBatcher(live, wait_ms=5)
    options = SearchOptions.from_settings(settings)
    cancelled = 0
    for n in range(20):
        pending = [batcher.submit(QUESTIONS[(n + m) % len(QUESTIONS)], 3, options) for m in range(3)]
        cancelled += sum(future.cancel() for future in pending)
        assert batcher.submit("water", 3, options).result(timeout=60)  # still answering
    assert cancelled > 0  # some were cancelled before the batcher took them
    batcher.close()
    live.close()
