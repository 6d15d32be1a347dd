"""Durations and times of day: the accepted forms, and advice that says how to write a refused one."""
from __future__ import annotations

from datetime import time, timedelta

import pytest

from mauto.workflow.durations import (
    DurationError,
    DurationTooLong,
    check_timeout,
    format_duration,
    parse_duration,
    parse_time_of_day,
)

MINUTE, HOUR, DAY, WEEK = 60, 3600, 86400, 604800


@pytest.mark.parametrize(("text", "seconds"), [
    ("30m", 30 * MINUTE), ("1h", HOUR), ("3d", 3 * DAY), ("2w", 2 * WEEK), ("45s", 45), ("0s", 0),
    ("1h30m", HOUR + 30 * MINUTE), ("1w2d", WEEK + 2 * DAY), ("1d12h", DAY + 12 * HOUR), ("90m", 90 * MINUTE),
    ("P3D", 3 * DAY), ("PT1H30M", HOUR + 30 * MINUTE), ("P2W", 2 * WEEK), ("P1DT2H", DAY + 2 * HOUR),
    ("PT45S", 45), ("PT1M", MINUTE), ("P0D", 0),
])
def test_accepted_forms(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_signed_durations_only_where_allowed():
    assert parse_duration("-7d", signed=True) == timedelta(days=-7)
    assert parse_duration("-P1D", signed=True) == timedelta(days=-1)
    assert parse_duration("7d", signed=True) == timedelta(days=7)
    with pytest.raises(DurationError):
        parse_duration("-7d")


@pytest.mark.parametrize(("text", "advice"), [
    ("3 days", "`3 days` is not a duration; write `3d`"),
    ("2 weeks", "`2 weeks` is not a duration; write `2w`"),
    ("10 min", "`10 min` is not a duration; write `10m`"),
    ("1 hour", "`1 hour` is not a duration; write `1h`"),
    ("3D", "`3D` is not a duration; write `3d`"),
    ("3", "`3` has no unit; write e.g. `3d` (units: s, m, h, d, w)"),
    ("P1M", "`P1M`: months and years have no fixed length; write days or weeks, e.g. 30d"),
    ("P1Y", "`P1Y`: months and years have no fixed length; write days or weeks, e.g. 30d"),
    ("P1Y2D", "`P1Y2D`: months and years have no fixed length; write days or weeks, e.g. 30d"),
])
def test_refused_forms_say_how_to_write_them(text, advice):
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert str(caught.value) == advice


GENERIC = "is not a duration; write a number and a unit (s, m, h, d, w), e.g. 30m, 1h, 3d, 2w"


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "1.5h", "1h 30m", "h", "1x", "soon", "-7d", "P1W2D"])
def test_other_refusals_give_the_general_advice(text):
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert str(caught.value) == f"`{text}` {GENERIC}"


@pytest.mark.parametrize("value", [3, None, 1.5])
def test_a_non_string_is_not_a_duration(value):
    with pytest.raises(DurationError) as caught:
        parse_duration(value)
    assert str(caught.value) == f"`{value}` is not a duration; write a number and a unit, e.g. 3d"


def test_duration_error_is_a_value_error():
    assert issubclass(DurationError, ValueError)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (90 * MINUTE, "1h30m"), (2 * WEEK, "2w"), (WEEK + DAY + 5, "1w1d5s"), (-90 * MINUTE, "-1h30m"),
])
def test_format_duration_is_the_compact_form(seconds, text):
    assert format_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize("text", ["30m", "1h30m", "2w", "1w1d5s", "3d"])
def test_format_and_parse_round_trip(text):
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(("text", "value"), [("09:00", time(9)), ("00:00", time(0)), ("23:59", time(23, 59)),
                                             ("21:30", time(21, 30))])
def test_time_of_day(text, value):
    assert parse_time_of_day(text) == value


@pytest.mark.parametrize("text", ["9:00", "24:00", "12:60", "0900", "9pm", "09:00:00", "", None])
def test_bad_time_of_day(text):
    with pytest.raises(DurationError) as caught:
        parse_time_of_day(text)
    assert str(caught.value) == f"`{text}` is not a time of day; write 24-hour HH:MM, e.g. 09:00 or 21:30"


# --- the bound: at most 365000d (mauto.limits.LONGEST) -------------------------------------------

LONGEST_TEXT = "at most 365000d (about 1,000 years)"


@pytest.mark.parametrize(("text", "signed"), [
    ("99999999999d", False), ("365001d", False), ("52143w", False), ("31536000001s", False),
    ("P99999999999D", False), ("PT8760001H", False), ("364999d99999999h", False),
    ("-99999999999d", True), ("99999999999999999999999999999999s", False),  # past timedelta's own range
])
def test_a_duration_longer_than_mauto_handles_is_refused(text, signed):
    # Before: accepted (or an OverflowError from timedelta); every tick then overflowed on `now + it`.
    with pytest.raises(DurationTooLong) as caught:
        parse_duration(text, signed=signed)
    assert str(caught.value) == f"`{text}` is longer than mauto handles ({LONGEST_TEXT})"
    assert isinstance(caught.value, DurationError)


def test_thousands_of_digits_are_refused_in_a_short_message():
    # Before: ValueError from int() ("Exceeds the limit (4300 digits)"), not a DurationError.
    with pytest.raises(DurationTooLong) as caught:
        parse_duration("9" * 5000 + "d")
    assert str(caught.value) == f"`{'9' * 30}…` is longer than mauto handles ({LONGEST_TEXT})"


def test_the_bound_itself_is_accepted():
    assert parse_duration("365000d") == timedelta(days=365_000)
    assert parse_duration("-365000d", signed=True) == timedelta(days=-365_000)
    assert parse_duration("000000000000000000000003d") == timedelta(days=3)  # leading zeros are not size


@pytest.mark.parametrize(("text", "message"), [
    ("0s", "a timeout of `0s` gives up before anything is sent; write at least 1s"),
    ("2h", "a timeout of `2h` is longer than a request may wait (at most 1h)"),
    ("99999999999d", f"`99999999999d` is longer than mauto handles ({LONGEST_TEXT})"),
])
def test_a_timeout_is_longer_than_0s_and_at_most_an_hour(text, message):
    with pytest.raises(DurationError) as caught:
        check_timeout(text)
    assert str(caught.value) == message
    assert check_timeout("1h") == timedelta(hours=1)
