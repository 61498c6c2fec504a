"""The server's write gate: one HTTP write at a time, how long each took, and a way for shutdown to wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType


class WriteGate:
    """A lock for HTTP writes (`with gate:`) that reports each write's duration and how many are running or
    queued, and lets shutdown wait until none is left: a write holds the index's writer lock, and the process
    must not end in the middle of one."""

    def __init__(
        self, on_done: Callable[[float], None] | None = None, on_pending: Callable[[int], None] | None = None
    ) -> None:
        self._ready = threading.Condition()
        self._busy = False
        self._pending = 0  # writes running or waiting for the gate
        self._started = 0.0
        self.on_done = on_done  # told each write's seconds
        self.on_pending = on_pending  # told how many writes run or wait, at each change

    def __enter__(self) -> None:
        with self._ready:
            self._count(+1)
            try:
                while self._busy:
                    self._ready.wait()
            except BaseException:
                self._count(-1)
                raise
            self._busy = True
        self._started = time.perf_counter()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        seconds = time.perf_counter() - self._started
        with self._ready:
            self._busy = False
            self._count(-1)
            self._ready.notify_all()
        if self.on_done is not None:
            self.on_done(seconds)

    def _count(self, change: int) -> None:
        self._pending += change
        if self.on_pending is not None:
            self.on_pending(self._pending)

    @property
    def pending(self) -> int:
        return self._pending

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no write runs or waits (True), or until `timeout` seconds pass (False)."""
        with self._ready:
            return self._ready.wait_for(lambda: self._pending == 0, timeout)
