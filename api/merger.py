"""The server's background merger: after each write it runs the merges the policy asks for, holding the write
gate only to commit each one, then serves the merged commit; searches never wait for it."""

from __future__ import annotations

import logging
import threading

from semsearch.api.write_gate import WriteGate
from semsearch.errors import SemsearchError
from semsearch.index.writing.merging import MergeReport, merge_pending
from semsearch.search.live import LiveSearcher
from semsearch.settings import Settings

log = logging.getLogger("semsearch.merge")


class BackgroundMerger:
    """A daemon thread that merges when `wake` is called (after a write), one merge at a time, on one thread
    (a graph build must not take the cores searches run on)."""

    def __init__(self, settings: Settings, live: LiveSearcher, gate: WriteGate) -> None:
        self.settings = settings
        self.live = live
        self.gate = gate
        self.merges = 0
        self.failures = 0
        self.last: MergeReport | None = None
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._loop, name="semsearch-merge", daemon=True)

    def start(self) -> BackgroundMerger:
        self._thread.start()
        self.wake()  # an index left with too many segments (by a CLI run without merges) is merged too
        return self

    def wake(self) -> None:
        self._idle.clear()
        self._wanted.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no merge is wanted or running (True), or `timeout` seconds pass (False)."""
        return self._idle.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop, and wait up to `timeout` seconds for a merge in progress (one killed halfway
        leaves the last commit whole all the same)."""
        self._stop.set()
        self._wanted.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wanted.wait()
            self._wanted.clear()
            if self._stop.is_set():
                break
            try:
                for report in merge_pending(self.settings, gate=self.gate, threads=1):
                    self.merges += 1
                    self.last = report
                    if self._stop.is_set():
                        break
                    self.live.refresh()
            except SemsearchError as exc:
                self.failures += 1
                log.error("merging failed: %s", exc)
            except Exception:  # a merge must never take the server down
                self.failures += 1
                log.exception("merging failed")
            if not self._wanted.is_set():
                self._idle.set()
