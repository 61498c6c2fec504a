"""A request's search options from the values it gave: the one place HTTP, `ask` and `Engine` turn parameters
into `SearchOptions`, so they accept and refuse the same values."""

from __future__ import annotations

from semsearch.errors import InvalidSearchError
from semsearch.search import recency
from semsearch.search.filters import Filters
from semsearch.search.searcher import SearchOptions


def request_options(
    defaults: SearchOptions,
    *,
    offset: int | None = None,
    sort: str | None = None,
    recency_half_life: float | None = None,
    now: str | None = None,
    mode: str | None = None,
    fusion: str | None = None,
    weight: float | None = None,
    per_article: int | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    source: str | None = None,
    article_id: str | None = None,
) -> SearchOptions:
    """`defaults` with what the request gave (None keeps a default); InvalidSearchError for a value out of range,
    naming it, then InvalidFilterError for a bad filter."""
    moment = recency.requested(recency_half_life, now)
    try:
        options = defaults.replace(
            offset=offset,
            sort=sort,
            recency_half_life=recency_half_life,
            now=moment,
            mode=mode,
            fusion=fusion,
            weight=weight,
            per_article=per_article,
        )
    except ValueError as exc:
        raise InvalidSearchError(str(exc)) from None
    return options.replace(filters=Filters.parse(date_from, date_to, source, article_id))
