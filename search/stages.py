"""Where a search spends its time: encode (the model), retrieve (vector index and BM25 lookups) and rank
(fusion, diversification, building the hits), summed over one batch and reported to an observer, if any."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STAGES = ("encode", "retrieve", "rank")
# Called once per stage of a batch with the stage's name and its seconds (e.g. a metrics histogram).
StageObserver = Callable[[str, float], None]


class StageClock:
    """Seconds per stage, added up over the calls of one batch; `report` hands them to the observer."""

    def __init__(self, observer: StageObserver | None) -> None:
        self.observer = observer
        self.spent: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.observer is None:
            yield
            return
        started = time.perf_counter()
        try:
            yield
        finally:
            self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - started

    def report(self) -> None:
        if self.observer is not None:
            for name, seconds in self.spent.items():
                self.observer(name, seconds)
        self.spent.clear()
