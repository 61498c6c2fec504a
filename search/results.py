"""Search results: small frozen records, independent of any transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Hit:
    """One ranked passage; `offsets` are character offsets of `text` in the article body.

    `highlights` are (start, end) offsets in `text` of the words that match the query's terms;
    `duplicates` lists other articles whose near-identical passage folded into this hit.
    """

    rank: int
    score: float
    passage_id: int
    article_id: str
    title: str
    text: str
    date: str | None
    source: str | None
    url: str | None
    offsets: tuple[int, int]
    highlights: tuple[tuple[int, int], ...] = ()
    duplicates: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArticleView:
    """An article with its passages in order, for `GET /articles/{id}` and `Engine.article`."""

    id: str
    title: str
    body: str
    date: str | None
    source: str | None
    url: str | None
    author: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    passages: list[tuple[int, tuple[int, int]]] = field(default_factory=list)
