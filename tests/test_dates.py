from __future__ import annotations

import pytest

from semsearch.index.reading.dates import normalize_date


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2012-05-01", "2012-05-01"),
        ("2012-05-01 19:05:31", "2012-05-01T19:05:31"),
        ("2012-05-01T19:05:31Z", "2012-05-01T19:05:31+00:00"),
        ("Tue, 01 May 2012 19:05:31 +0200", "2012-05-01T19:05:31+02:00"),
        ("1 May 2012", "2012-05-01"),
        ("May 1, 2012", "2012-05-01"),
        ("2012/05/01", "2012-05-01"),
        ("", None),
        (None, None),
    ],
)
def test_dates_become_iso(raw: object, expected: str | None) -> None:
    assert normalize_date(raw) == expected


def test_unreadable_date_raises() -> None:
    with pytest.raises(ValueError, match="unrecognised date"):
        normalize_date("next Tuesday")
