"""The recency boost of relevance ranking: a score scaled by a decay of its article's age. Pure functions."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from semsearch.errors import InvalidSearchError
from semsearch.index.reading.dates import timestamp
from semsearch.params import INSTANT_PATTERN

DAY = 86_400.0
MINUTE = 60.0
_INSTANT = re.compile(INSTANT_PATTERN)
# What the oldest articles (and the undated ones) keep of their score; a new one keeps all of it.
FLOOR = 0.5


def instant(now: str | None, default: float) -> float:
    """Unix seconds of a request's `now` (an ISO 8601 day or time, UTC unless it names a zone), or `default`
    when it gives none (None or empty text, as HTTP leaves an empty field out). InvalidSearchError for text
    that `INSTANT_PATTERN` refuses (2012-W22-1, 20120531), as HTTP does, or that is no real moment (2024-02-30)."""
    if not isinstance(now, str | None):
        raise InvalidSearchError(f"now={now!r} is not a day or time: give ISO 8601 text, e.g. 2024-05-31T12:00:00Z")
    if not now:
        return default
    seconds = timestamp(now) if _INSTANT.fullmatch(now) else None
    if seconds is None:
        raise InvalidSearchError(f"now={now!r} is not a day or time: use ISO 8601, e.g. 2024-05-31T12:00:00Z")
    return seconds


def factors(times: npt.NDArray[np.float64], now: float, half_life_days: float) -> npt.NDArray[np.float64]:
    """The share of its score each article keeps: FLOOR + (1 - FLOOR) * 2^(-age / half-life), age in days
    before `now`. An article dated after `now` counts as new; an undated one (NaN) keeps FLOOR, as the
    oldest do, so it is neither lifted above dated articles nor dropped."""
    age = np.clip((now - times) / DAY, 0.0, None)
    kept = FLOOR + (1.0 - FLOOR) * np.exp2(-age / half_life_days)
    return np.where(np.isnan(times), FLOOR, kept)


def boosted(scores: npt.NDArray[np.floating], kept: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """`scores` each lowered by the share of its magnitude its article does not keep: a positive score is
    scaled by `kept`, and a negative one (a dense cosine can be) moves down as much, never up."""
    values = scores.astype(np.float64)
    return values - (1.0 - kept) * np.abs(values)


def requested(half_life: float | None, now: str | None, clock: Callable[[], float] = time.time) -> float | None:
    """The `now` of SearchOptions for a request: its `now` when it asks for the recency boost, or the clock's
    time floored to the minute (ages count in days, and requests of one minute then share one SearchOptions,
    which the micro-batcher groups); None without a half-life. A bad `now` is refused even then, not ignored."""
    if half_life is None:
        instant(now, 0.0)  # refused when bad, though it changes nothing
        return None
    return instant(now, math.floor(clock() / MINUTE) * MINUTE)
