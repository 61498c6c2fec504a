"""Micro-batching: queries that arrive together are encoded in one model call and searched together.

One worker thread takes every query waiting in the queue, and, when the last batch held more than one (the
server is under concurrent load), waits up to `wait_ms` for more before it runs them. A lone query is never
delayed. The worker owns the model, so requests do not fight over the two cores either.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from search.live import LiveSearcher
from search.results import Hit
from search.searcher import SearchOptions

log = logging.getLogger("semsearch.batcher")


@dataclass
class _Request:
    query: str
    k: int
    options: SearchOptions
    done: Future[list[Hit]] = field(default_factory=Future)


class QueryBatcher:
    """Answers `search` calls from many threads with one worker that batches what arrives together."""

    def __init__(self, live: LiveSearcher, wait_ms: float = 2.0, max_batch: int = 32) -> None:
        self.live = live
        self.wait = wait_ms / 1000
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self.batches = 0
        self.queries = 0
        self._thread = threading.Thread(target=self._run, name="semsearch-batcher", daemon=True)
        self._thread.start()

    def submit(self, query: str, k: int, options: SearchOptions) -> Future[list[Hit]]:
        """Queue one search; the future holds its hits (or its error) once its batch is answered."""
        request = _Request(query, k, options)
        self._queue.put(request)
        return request.done

    def search(self, query: str, k: int, options: SearchOptions) -> list[Hit]:
        return self.submit(query, k, options).result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

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
        return batch

    def _run(self) -> None:
        last_size = 1
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = self._collect(first, patient=last_size > 1 and self.wait > 0)
            last_size = len(batch)
            self._answer(batch)

    def _answer(self, batch: Sequence[_Request]) -> None:
        self.batches += 1
        self.queries += len(batch)
        try:
            with self.live.use() as searcher:
                results = searcher.search_batch([(r.query, r.k, r.options) for r in batch])
        except BaseException as exc:  # the searcher failed as a whole: every request hears why
            for request in batch:
                request.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for request, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                request.done.set_exception(result)
            else:
                request.done.set_result(result)
