from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfence.policy.calendar import Duration, format_time, parse_duration, parse_time


def at(text: str) -> datetime:
    return parse_time(text)


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        ("2026-01-01T00:00:00Z", "30d", "2026-01-31T00:00:00Z"),
        ("2026-02-15T12:34:56Z", "30d", "2026-03-17T12:34:56Z"),
        ("2026-01-02T00:00:00Z", "5y", "2031-01-02T00:00:00Z"),
        ("2028-02-29T10:00:00Z", "5y", "2033-02-28T10:00:00Z"),  # 29 February becomes 28 February
        ("2028-02-29T10:00:00Z", "4y", "2032-02-29T10:00:00Z"),  # ...only when the target year has none
        ("2026-12-31T23:59:59Z", "1y", "2027-12-31T23:59:59Z"),
    ],
)
def test_calendar_durations(start: str, duration: str, expected: str) -> None:
    assert format_time(parse_duration(duration).after(at(start))) == expected


@pytest.mark.parametrize("bad", ["", "0d", "30", "d", "5 y", "-1d", "3m", "1.5y", "99999d"])
def test_bad_durations_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", ["2026-01-01", "2026-01-01T00:00:00", "yesterday", "", "2026-13-01T00:00:00Z"])
def test_times_need_a_zone_and_a_valid_date(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid time"):
        parse_time(bad)


def test_non_string_time_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid time"):
        parse_time(20260101)  # type: ignore[arg-type]


def test_offsets_are_converted_to_utc() -> None:
    assert format_time(parse_time("2026-01-01T02:00:00+02:00")) == "2026-01-01T00:00:00Z"


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)))
def test_format_and_parse_round_trip(moment: datetime) -> None:
    assert parse_time(format_time(moment)) == moment


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    st.integers(1, 10),
)
def test_years_keep_time_and_never_go_backwards(moment: datetime, years: int) -> None:
    later = Duration(years=years).after(moment)
    assert later > moment
    assert (later.month, later.hour, later.minute, later.second) == (
        moment.month,
        moment.hour,
        moment.minute,
        moment.second,
    )
    assert later.year == moment.year + years
