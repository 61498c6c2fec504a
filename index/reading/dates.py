"""Normalise the date strings news feeds use to ISO 8601."""

from __future__ import annotations

import email.utils
from datetime import date, datetime

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
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return datetime.fromtimestamp(float(raw)).replace(microsecond=0).isoformat()
    text = str(raw).strip()
    if not text:
        return None
    parsed = _parse(text)
    if parsed is None:
        raise ValueError(f"unrecognised date {text!r}")
    if isinstance(parsed, datetime):
        if (parsed.hour, parsed.minute, parsed.second, parsed.tzinfo) == (0, 0, 0, None) and len(text) <= 10:
            return parsed.date().isoformat()
        return parsed.replace(microsecond=0).isoformat()
    return parsed.isoformat()


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
