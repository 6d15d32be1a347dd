"""`wait: {until: …}`: a time of day, a date, or a date-time."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest

from mauto.workflow.until import UntilError, parse_until


@pytest.mark.parametrize(("text", "value"), [
    ("09:00", time(9)),
    ("23:30", time(23, 30)),
    ("2026-12-24", date(2026, 12, 24)),
    ("2026-12-24T09:00", datetime(2026, 12, 24, 9)),
    ("2026-12-24 09:00", datetime(2026, 12, 24, 9)),
    ("2026-12-24T09:00:00+01:00", datetime(2026, 12, 24, 9, tzinfo=timezone(timedelta(hours=1)))),
    ("2026-12-24T08:00:00Z", datetime(2026, 12, 24, 8, tzinfo=UTC)),
])
def test_accepted(text, value):
    parsed = parse_until(text)
    assert parsed == value
    assert type(parsed) is type(value)  # a date is not read as a midnight datetime, nor the reverse


def test_a_date_with_an_offset_keeps_the_offset():
    parsed = parse_until("2026-12-24T09:00:00-05:00")
    assert parsed.utcoffset() == timedelta(hours=-5)


@pytest.mark.parametrize(("text", "message"), [
    ("9:00", "`9:00` is not a time of day; write 24-hour HH:MM, e.g. 09:00 or 21:30"),
    ("25:00", "`25:00` is not a time of day; write 24-hour HH:MM, e.g. 09:00 or 21:30"),
    ("2026-02-30", "`2026-02-30` is not a real date; write YYYY-MM-DD"),
    ("2026-13-01T09:00", "`2026-13-01T09:00` is not a real date-time; write YYYY-MM-DDTHH:MM with an optional "
                         "offset, e.g. 2026-12-24T09:00:00+01:00"),
    ("tomorrow", "`tomorrow` is neither a time of day (09:00) nor a date (2026-12-24) nor a date-time "
                 "(2026-12-24T09:00:00+01:00)"),
    ("24/12/2026", "`24/12/2026` is neither a time of day (09:00) nor a date (2026-12-24) nor a date-time "
                   "(2026-12-24T09:00:00+01:00)"),
])
def test_refused(text, message):
    with pytest.raises(UntilError) as caught:
        parse_until(text)
    assert str(caught.value) == message


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-12:00", "9999-12-31", "9000-01-01", "9000-01-01T00:00Z",
                                  "0999-12-31", "0001-01-01T00:00", "1000-01-01T00:00:00+01:00"])
def test_a_moment_outside_the_times_mauto_handles_is_refused(text):
    # Before: accepted; `9999-12-31T23:59:59-12:00` overflowed in every tick (its UTC form is past year 9999).
    with pytest.raises(UntilError) as caught:
        parse_until(text)
    assert str(caught.value) == f"`{text}` is outside the times mauto handles (years 1000 to 8999)"


@pytest.mark.parametrize(("text", "value"), [
    ("1000-01-01", date(1000, 1, 1)),
    ("8999-12-31T23:59", datetime(8999, 12, 31, 23, 59)),
    ("8999-12-31T23:59:59+00:00", datetime(8999, 12, 31, 23, 59, 59, tzinfo=UTC)),
])
def test_the_edges_of_the_times_mauto_handles_are_accepted(text, value):
    assert parse_until(text) == value
