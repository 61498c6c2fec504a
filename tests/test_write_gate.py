"""The write gate: one write at a time, each timed, and an app shutdown that waits for the write in progress."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from semsearch.api.app import create_app
from semsearch.api.write_gate import WriteGate
from semsearch.settings import Settings


def running(function: Callable[..., Any]) -> bool:
    """Whether some thread is inside `function` now."""
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code is function.__code__:
                return True
            frame = frame.f_back  # type: ignore[assignment]
    return False


def test_writes_take_turns_and_are_timed() -> None:
    durations: list[float] = []
    pending: list[int] = []
    gate = WriteGate(durations.append, pending.append)
    inside, release, order = threading.Event(), threading.Event(), []

    def first() -> None:
        with gate:
            inside.set()
            release.wait(30)
            order.append("first")

    def second() -> None:
        with gate:
            order.append("second")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert inside.wait(30)
    threads[1].start()
    deadline = time.monotonic() + 30
    while gate.pending < 2:  # the second writer waits at the gate
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not gate.wait_idle(timeout=0)
    release.set()
    for thread in threads:
        thread.join(30)
    assert order == ["first", "second"] and len(durations) == 2 and all(d >= 0 for d in durations)
    assert pending == [1, 2, 1, 0] and gate.wait_idle(timeout=0)


def test_app_shutdown_waits_for_the_write_in_progress(gv_settings: Settings) -> None:
    """A write's thread can outlive its request (cancelled at the end of a graceful shutdown): the app must not
    close its index, and the process must not end, while the write holds the gate."""
    client = TestClient(create_app(gv_settings))
    client.__enter__()
    app = client.app
    writing, finish = threading.Event(), threading.Event()
    seen: list[bool] = []

    def write() -> None:
        with app.state.write_lock:  # type: ignore[attr-defined]
            writing.set()
            finish.wait(60)
            seen.append(app.state.live.loaded)  # type: ignore[attr-defined]

    writer = threading.Thread(target=write)
    writer.start()
    assert writing.wait(30)
    closing = threading.Thread(target=client.__exit__, args=(None, None, None))
    closing.start()
    deadline = time.monotonic() + 60
    while not running(WriteGate.wait_idle):  # the shutdown has got as far as waiting for the write
        assert closing.is_alive() and time.monotonic() < deadline, "the shutdown did not wait for the write"
        time.sleep(0.01)
    assert closing.is_alive() and app.state.write_lock.pending == 1 and seen == []  # type: ignore[attr-defined]
    finish.set()
    writer.join(60)
    closing.join(60)
    assert not closing.is_alive() and seen == [True]  # the index was still open when the write finished
    assert not app.state.live.loaded  # type: ignore[attr-defined]
