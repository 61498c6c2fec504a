"""Dates become ISO 8601; numbers follow one documented rule (see `dates`), never the local time zone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (20240101, "2024-01-01"),  # a day YYYYMMDD, as the string "20240101" reads
        (10_000_101, "1000-01-01"),
        (100_000_000, "1973-03-03T09:46:40+00:00"),  # the first Unix second taken
        (1_714_521_600, "2024-05-01T00:00:00+00:00"),  # seconds, in UTC whatever the machine's zone
        (1_714_521_600.75, "2024-05-01T00:00:00+00:00"),
        (99_999_999_999, "5138-11-16T09:46:39+00:00"),  # the last second
        (100_000_000_000, "1973-03-03T09:46:40+00:00"),  # the first millisecond
        (1_714_521_600_123, "2024-05-01T00:00:00+00:00"),
        (99_999_999_999_999, "5138-11-16T09:46:39+00:00"),  # the last millisecond
    ],
)
def test_a_number_is_read_by_its_magnitude_in_utc(number: float, expected: str) -> None:
    assert normalize_date(number) == expected
    if isinstance(number, int) and number < 10**8:
        assert normalize_date(str(number)) == expected  # the same day as the string of its digits


@pytest.mark.parametrize(
    "number",
    [0, 1, -1, 9_999_999, 20241399, 20240230, 20240101.0, -1_714_521_600, 10**14, 1e300,
     pytest.param(10**5000, id="10**5000"), float("nan"), float("inf"), -float("inf"), 5e-324],
)  # fmt: skip
def test_a_number_that_is_no_date_by_the_rule_is_refused_with_the_rule(number: float) -> None:
    with pytest.raises(ValueError, match=r"is not a (date|day YYYYMMDD)") as raised:
        normalize_date(number)
    assert len(str(raised.value)) < 400
    if "YYYYMMDD (" not in str(raised.value):
        assert "Unix seconds" in str(raised.value) and "UTC" in str(raised.value)


@pytest.mark.parametrize("flag", [True, False])
def test_true_and_false_are_not_dates(flag: bool) -> None:
    with pytest.raises(ValueError, match=f"^{str(flag).lower()} is not a date"):
        normalize_date(flag)


@given(st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=64)))
def test_any_value_is_a_date_or_a_value_error(raw: object) -> None:
    try:
        result = normalize_date(raw)
    except ValueError as exc:
        assert str(exc) and len(str(exc)) < 400
        return
    assert result is None or result[:4].isdigit()
