"""Filters a search can carry: a date range, a source, one article. Validated once, at the edge."""

from __future__ import annotations

import re
from dataclasses import dataclass

from semsearch.errors import InvalidFilterError

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _day(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    from datetime import date

    try:
        if not _DAY.match(text):
            raise ValueError
        date.fromisoformat(text)
    except ValueError:
        raise InvalidFilterError(f"{name}={value!r} is not a date: use YYYY-MM-DD, e.g. 2024-05-31") from None
    return text


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip() or None


@dataclass(frozen=True)
class Filters:
    """Conditions on a hit's article; every given one must hold. Empty strings mean "not given"."""

    date_from: str | None = None
    date_to: str | None = None
    source: str | None = None
    article_id: str | None = None

    @classmethod
    def parse(
        cls,
        date_from: str | None = None,
        date_to: str | None = None,
        source: str | None = None,
        article_id: str | None = None,
    ) -> Filters:
        """Checked filters; raises InvalidFilterError naming the field and what is allowed."""
        start, end = _day("date_from", date_from), _day("date_to", date_to)
        if start and end and start > end:
            raise InvalidFilterError(f"date_from={start} is after date_to={end}: give a range that is not empty")
        return cls(start, end, _text(source), _text(article_id))

    @property
    def empty(self) -> bool:
        return not (self.date_from or self.date_to or self.source or self.article_id)
