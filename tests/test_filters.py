"""Filter validation: the message names the field and what is allowed."""

from __future__ import annotations

import pytest

from semsearch.errors import InvalidFilterError
from semsearch.search.filters import Filters


def test_valid_filters_are_trimmed_and_blank_means_absent() -> None:
    f = Filters.parse(" 2012-05-01 ", "2012-05-31", "  Global Voices ", "")
    assert f == Filters("2012-05-01", "2012-05-31", "Global Voices", None)
    assert not f.empty and Filters.parse().empty and Filters.parse("", " ", "", None).empty


@pytest.mark.parametrize("value", ["2012-13-01", "2012-5-1", "yesterday", "2012-02-30", "20120501"])
def test_a_date_that_is_not_yyyy_mm_dd_is_refused(value: str) -> None:
    with pytest.raises(InvalidFilterError, match="date_from=.*YYYY-MM-DD"):
        Filters.parse(date_from=value)


def test_an_empty_range_is_refused() -> None:
    with pytest.raises(InvalidFilterError, match="after date_to"):
        Filters.parse("2012-06-01", "2012-05-01")
