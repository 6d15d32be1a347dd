"""Durations and times of day: the accepted forms, and advice that says how to write a refused one."""
from __future__ import annotations

from datetime import time, timedelta

import pytest

from mauto.workflow.durations import DurationError, format_duration, parse_duration, parse_time_of_day

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
