"""Micro-batching: queries that arrive together are encoded in one model call and ranked together.

Two stages, one thread each, so the model and the ranking overlap: the encoder takes every query waiting in
the queue (and, when its last batch held more than one, so the server is under concurrent load, waits up to
`wait_ms` for more), checks and encodes them, and hands the batch on; the ranker ranks it and answers each
request while the next batch is being encoded. A lone query is never delayed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field

from semsearch.search.live import LiveSearcher
from semsearch.search.results import Hit
from semsearch.search.searcher import EncodedBatch, Searcher, SearchOptions

log = logging.getLogger("semsearch.batcher")


@dataclass
class _Request:
    query: str
    k: int
    options: SearchOptions
    done: Future[list[Hit]] = field(default_factory=Future)


@dataclass
class _Encoded:
    """A batch between the stages: its requests, the generation it holds open, and its vectors."""

    requests: list[_Request]
    held: ExitStack
    searcher: Searcher
    batch: EncodedBatch


class QueryBatcher:
    """Answers `search` calls from many threads: one thread batches and encodes what arrives together, a
    second ranks the batch before."""

    def __init__(
        self,
        live: LiveSearcher,
        wait_ms: float = 2.0,
        max_batch: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.live = live
        self.wait = wait_ms / 1000
        self.max_batch = max_batch
        self.on_batch = on_batch  # told the size of each batch (server metrics)
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        # One batch waits for the ranker at most: meanwhile new queries gather into the next batch.
        self._encoded: queue.Queue[_Encoded | None] = queue.Queue(maxsize=1)
        self.batches = 0
        self.queries = 0
        self._threads = [
            threading.Thread(target=self._encode_loop, name="semsearch-batcher", daemon=True),
            threading.Thread(target=self._rank_loop, name="semsearch-ranker", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def warm(self) -> None:
        """Encode one small batch now, so that the first batch under load does not pay for setting up the
        model's batch path (onnxruntime's one-thread sessions)."""
        with self.live.use() as searcher:
            searcher.encode(["warm-up", "a second warm-up query"])

    def submit(self, query: str, k: int, options: SearchOptions) -> Future[list[Hit]]:
        """Queue one search; the future holds its hits (or its error) once its batch is answered."""
        request = _Request(query, k, options)
        self._queue.put(request)
        return request.done

    def search(self, query: str, k: int, options: SearchOptions) -> list[Hit]:
        return self.submit(query, k, options).result()

    def close(self) -> None:
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=10)

    def _collect(self, first: _Request, patient: bool) -> list[_Request]:
        """`first` and whatever else is queued; when `patient`, also what arrives within the wait."""
        batch = [first]
        deadline = time.monotonic() + (self.wait if patient else 0.0)
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # stop after this batch
                break
            batch.append(item)
        # A request whose caller gave up (its future was cancelled) is dropped; the rest can no longer be cancelled.
        return [r for r in batch if r.done.set_running_or_notify_cancel()]

    def _encode_loop(self) -> None:
        last_size = 1
        while True:
            first = self._queue.get()
            if first is None:
                self._encoded.put(None)  # the ranker stops after the batches before
                return
            requests = self._collect(first, patient=last_size > 1 and self.wait > 0)
            last_size = len(requests)
            if not requests:
                continue
            self.batches += 1
            self.queries += len(requests)
            if self.on_batch is not None:
                self.on_batch(len(requests))
            held = ExitStack()
            try:
                searcher = held.enter_context(self.live.use())
                batch = searcher.encode_batch([(r.query, r.k, r.options) for r in requests])
            except BaseException as exc:
                held.close()
                _fail(requests, exc)
                continue
            self._encoded.put(_Encoded(requests, held, searcher, batch))

    def _rank_loop(self) -> None:
        while True:
            item = self._encoded.get()
            if item is None:
                return
            with item.held:  # the generation stays open until its hits are built
                try:
                    results = item.searcher.rank_batch(item.batch)
                except BaseException as exc:
                    _fail(item.requests, exc)
                    continue
            for request, result in zip(item.requests, results, strict=True):
                if isinstance(result, Exception):
                    request.done.set_exception(result)
                else:
                    request.done.set_result(result)


def _fail(requests: Sequence[_Request], exc: BaseException) -> None:
    """The searcher failed as a whole: every request of the batch hears why. Only an `Exception` is survived;
    anything else (an interpreter exit) ends the thread after the requests are told."""
    log.debug("batch of %d failed: %s", len(requests), exc)
    for request in requests:
        request.done.set_exception(exc)
    if not isinstance(exc, Exception):
        raise exc
