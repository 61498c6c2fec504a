"""Normalise the date strings news feeds use to ISO 8601.

A number (a JSON record's `"date": 1714521600`) never depends on the machine's time zone; its magnitude
says what it is, and every other number is refused:

- an integer from 10,000,000 to 99,999,999 is a day written YYYYMMDD (20240101 is 2024-01-01, as the
  string "20240101" is);
- from 100,000,000 up to (not including) 100,000,000,000 it is a Unix time in seconds, in UTC
  (1973-03-03 to 5138-11-16);
- from 100,000,000,000 up to 100,000,000,000,000 it is a Unix time in milliseconds, in UTC (the same span);
- anything else (smaller, larger, negative, NaN, infinite, true or false) raises ValueError saying this rule.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, date, datetime

_FORMATS = (
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
    "%d %B %Y",
    "%d %b %Y",
    "%B %d, %Y",
    "%b %d, %Y",
    "%B %d %Y",
    "%d.%m.%Y",
)


def normalize_date(raw: object) -> str | None:
    """ISO 8601 for a date-like value: `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM:SS[+HH:MM]` when a time is given.

    Returns None for an empty value and raises ValueError for one that cannot be read as a date.
    """
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise ValueError(f"{str(raw).lower()} is not a date; give an ISO 8601 date such as 2024-05-31")
    if isinstance(raw, (int, float)):
        return _from_number(raw)
    text = str(raw).strip()
    if not text:
        return None
    parsed = _parse(text)
    if parsed is None:
        raise ValueError(f"unrecognised date {text[:80]!r}")
    if isinstance(parsed, datetime):
        if (parsed.hour, parsed.minute, parsed.second, parsed.tzinfo) == (0, 0, 0, None) and len(text) <= 10:
            return parsed.date().isoformat()
        return parsed.replace(microsecond=0).isoformat()
    return parsed.isoformat()


_DAYS = (10**7, 10**8)
_SECONDS = (10**8, 10**11)
_MILLISECONDS = (10**11, 10**14)
NUMBER_RULE = (
    "numbers are a day as YYYYMMDD (e.g. 20240531), Unix seconds from 100000000 to 99999999999 "
    "or Unix milliseconds from 100000000000 to 99999999999999, in UTC"
)


def _from_number(raw: int | float) -> str:
    """A number read by its magnitude (see the module docstring)."""
    if isinstance(raw, int) and _DAYS[0] <= raw < _DAYS[1]:
        year, month, day = raw // 10_000, raw // 100 % 100, raw % 100
        try:
            return date(year, month, day).isoformat()
        except ValueError as exc:
            raise ValueError(f"{raw} is not a day YYYYMMDD ({exc})") from None
    if isinstance(raw, float) and not math.isfinite(raw):
        seconds = None
    elif _SECONDS[0] <= raw < _SECONDS[1]:
        seconds = raw
    elif _MILLISECONDS[0] <= raw < _MILLISECONDS[1]:
        seconds = raw // 1000 if isinstance(raw, int) else raw / 1000
    else:
        seconds = None
    if seconds is None:
        shown = "a number of over 20 digits" if isinstance(raw, int) and abs(raw) >= 10**20 else repr(raw)
        raise ValueError(f"{shown} is not a date: {NUMBER_RULE}; or give an ISO 8601 date such as 2024-05-31")
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=0).isoformat()


def timestamp(iso: str | None) -> float | None:
    """Seconds since the Unix epoch of a normalised date (`normalize_date`'s output, or any ISO 8601 day or
    time): a day is its midnight, a time without a zone is UTC. None for None or for text that is not one."""
    if not iso:
        return None
    text = iso.strip().replace(" ", "T", 1)
    text = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        parsed = datetime.fromisoformat(text) if len(text) > 10 else datetime.fromisoformat(text + "T00:00:00")
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _parse(text: str) -> datetime | date | None:
    candidate = text[:-1] + "+00:00" if text.endswith("Z") else text
    try:
        if len(candidate) == 10:
            return date.fromisoformat(candidate)
        return datetime.fromisoformat(candidate)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        pass
    for fmt in _FORMATS:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed if "%H" in fmt else parsed.date()
    return None
