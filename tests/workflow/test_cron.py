"""Cron lines of `schedule` triggers, parsed by APScheduler, which the daemon fires them with."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from apscheduler.triggers.cron import CronTrigger

from mauto.workflow.cron import CronError, parse_cron

SUNDAY = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)  # 2026-03-01 is a Sunday


def next_fire(line: str, after: datetime = SUNDAY, zone: str = "UTC") -> datetime:
    return parse_cron(line, zone).get_next_fire_time(None, after)


def test_a_cron_line_is_an_apscheduler_trigger():
    trigger = parse_cron("0 9 * * MON")
    assert isinstance(trigger, CronTrigger)
    assert next_fire("0 9 * * MON") == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("line", "expected"), [
    ("*/15 * * * *", datetime(2026, 3, 1, 0, 15, tzinfo=UTC)),
    ("0 9 1 * *", datetime(2026, 3, 1, 9, 0, tzinfo=UTC)),
    ("0 9 2 * *", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
    ("0 0 1 * *", datetime(2026, 4, 1, 0, 0, tzinfo=UTC)),
    ("30 8 * * mon-fri", datetime(2026, 3, 2, 8, 30, tzinfo=UTC)),
    ("0 18 * * SAT,SUN", datetime(2026, 3, 1, 18, 0, tzinfo=UTC)),
])
def test_next_fire_times(line, expected):
    assert next_fire(line, after=datetime(2026, 3, 1, 0, 1, tzinfo=UTC)) == expected


def test_the_line_is_read_in_its_zone():
    fired = next_fire("0 9 * * MON", zone="Europe/Paris")
    assert fired.isoformat() == "2026-03-02T09:00:00+01:00"


@pytest.mark.parametrize(("line", "count"), [("0 9 * *", "4 fields"), ("0 9 * * * *", "6 fields"),
                                             ("", "0 fields"), ("@daily", "1 field;")])
def test_a_line_needs_five_fields(line, count):
    with pytest.raises(CronError) as caught:
        parse_cron(line)
    assert str(caught.value) == (f"`{line}` has {count.rstrip(';')}; a cron line has five: minute hour "
                                 "day-of-month month day-of-week, e.g. \"0 9 * * MON\"")


@pytest.mark.parametrize(("line", "field", "value"), [
    ("61 9 * * *", "minute", "61"),
    ("0 25 * * *", "hour", "25"),
    ("0 9 32 * *", "day-of-month", "32"),
    ("0 9 * 13 *", "month", "13"),
    ("0 9 * * FUNDAY", "day-of-week", "FUNDAY"),
])
def test_the_bad_field_is_named(line, field, value):
    with pytest.raises(CronError) as caught:
        parse_cron(line)
    assert str(caught.value).startswith(f"`{line}`: the {field} field `{value}` is not valid (")


@pytest.mark.parametrize(("line", "weekday"), [("0 9 * * 0", "Sunday"), ("0 9 * * 1", "Monday"),
                                               ("0 9 * * 5", "Friday")])
def test_numeric_days_of_week_are_read_as_cron_reads_them(line, weekday):
    assert next_fire(line, after=datetime(2026, 3, 2, 10, 0, tzinfo=UTC)).strftime("%A") == weekday


def test_seven_is_sunday_as_in_cron():
    assert next_fire("0 9 * * 7", after=datetime(2026, 3, 2, 10, 0, tzinfo=UTC)).strftime("%A") == "Sunday"
