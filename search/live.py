"""A searcher that follows the index on disk: when a writer makes a new generation current, the next
refresh loads it beside the old one and swaps; requests in flight finish on the generation they began
with, which is closed once the last of them is done. The model is loaded once and shared."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from semsearch.errors import NoIndexError, SemsearchError
from semsearch.index.model.embedder import Embedder
from semsearch.index.storage.generations import current_name
from semsearch.search.searcher import Searcher
from semsearch.search.stages import StageObserver
from semsearch.settings import Settings

log = logging.getLogger("semsearch.live")


class _Held:
    """A loaded searcher and how many requests use it now."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        self.users = 0
        self.retired = False


class LiveSearcher:
    """The current generation's searcher, swapped in place when the index changes."""

    def __init__(
        self, settings: Settings, embedder: Embedder | None = None, observe: StageObserver | None = None
    ) -> None:
        self.settings = settings
        self._embedder = embedder
        self.observe = observe  # given to each generation's searcher: how long its search stages take
        self.reload_errors = 0  # attempts to load a current generation that failed
        self._held: _Held | None = None
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self.last_error: SemsearchError | None = None

    @property
    def loaded(self) -> bool:
        return self._held is not None

    def unavailable(self) -> SemsearchError:
        """Why no generation is held, as an error to raise: a copy of the last load's (each request raises its
        own, so tracebacks do not pile up on one object), or NoIndexError before the first load."""
        error = self.last_error
        if error is None:
            return NoIndexError(f"The index at {self.settings.index} is not loaded yet")
        return type(error)(*error.args)

    @property
    def generation(self) -> str | None:
        held = self._held
        return held.searcher.index.generation.name if held else None

    def refresh(self) -> bool:
        """Load the current generation if it is not the one held; True when a new one was swapped in.

        A generation that fails to load (missing, corrupt, another model) leaves the held one serving;
        the error is kept in `last_error` and raised only when nothing is held yet.
        """
        with self._refresh_lock:
            name = current_name(self.settings.index)
            if self._held is not None and name == self.generation:
                return False
            try:
                searcher = self._open()
            except SemsearchError as exc:
                self.last_error = exc
                if name is not None:
                    self.reload_errors += 1
                if self._held is None:
                    raise
                log.error("kept generation %s: %s", self.generation, exc)
                return False
            self.last_error = None
            close_now = False
            with self._lock:
                old, self._held = self._held, _Held(searcher)
                if old is not None:
                    old.retired = True
                    close_now = old.users == 0
            if old is not None and close_now:
                old.searcher.close()
            log.info("serving generation %s", searcher.index.generation.name)
            return True

    def _open(self) -> Searcher:
        held = self._held  # still serving (so its segments are open) until the swap after this
        searcher = Searcher.open(self.settings, self._embedder, reuse=held.searcher if held is not None else None)
        searcher.observe = self.observe
        self._embedder = searcher.embedder
        return searcher

    @property
    def embedder(self) -> Embedder | None:
        return self._embedder

    @contextmanager
    def use(self) -> Iterator[Searcher]:
        """The current searcher, kept open until the caller is done with it."""
        with self._lock:
            held = self._held
            if held is None:
                raise RuntimeError("no generation is loaded")
            held.users += 1
        try:
            yield held.searcher
        finally:
            with self._lock:
                held.users -= 1
                close_now = held.retired and held.users == 0
            if close_now:
                held.searcher.close()

    def close(self) -> None:
        with self._lock:
            held, self._held = self._held, None
        if held is not None:
            held.searcher.close()


def follow(live: LiveSearcher, interval: float, stop: threading.Event) -> None:
    """Refresh every `interval` seconds until `stop` is set (run in a daemon thread)."""
    while not stop.wait(interval):
        try:
            live.refresh()
        except SemsearchError:
            pass  # kept in live.last_error; the held generation goes on serving
        except Exception:  # a reload must never take the server down
            log.exception("reloading the index failed")
