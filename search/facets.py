"""Facet counts: how many of a search's matching articles each source and each month holds. Pure functions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from semsearch.index.reading.folding import fold
from semsearch.index.storage.store import ArticleFacts


@dataclass(frozen=True)
class FacetValue:
    value: str
    count: int


@dataclass(frozen=True)
class Facets:
    """`articles` matching articles; per requested field, its values with their article counts (sources by
    count, most first; months newest first). Articles without a source or a date are counted in `articles`
    only."""

    articles: int
    source: list[FacetValue] | None = None
    month: list[FacetValue] | None = None


def parse_fields(text: str | None) -> tuple[str, ...]:
    """`source,month` as a tuple of distinct field names, in the order given ("" or None: none)."""
    return tuple(dict.fromkeys(f.strip() for f in (text or "").split(",") if f.strip()))


def count(rows: npt.NDArray[np.int64], facts: ArticleFacts, fields: Sequence[str]) -> Facets:
    """Facets over the articles at `rows` (article rows, each counted once). Sources compare folded, as the
    source filter does, and show their most common spelling."""
    articles = np.unique(rows)
    out = Facets(int(len(articles)))
    if "source" in fields:
        spellings: dict[str, Counter[str]] = {}
        for row in articles.tolist():
            source = facts.sources[row]
            if source and source.strip():
                spellings.setdefault(fold(source.strip()), Counter())[source.strip()] += 1
        values = [FacetValue(c.most_common(1)[0][0], sum(c.values())) for c in spellings.values()]
        out = Facets(out.articles, sorted(values, key=lambda v: (-v.count, v.value)), out.month)
    if "month" in fields:
        months = Counter(m for m in (facts.months[row] for row in articles.tolist()) if m)
        values = [FacetValue(m, n) for m, n in sorted(months.items(), reverse=True)]
        out = Facets(out.articles, out.source, values)
    return out
