"""When date and schedule triggers come due (pure: the caller gives the period)."""
from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from typing import Any, Iterator
from zoneinfo import ZoneInfo

from mauto.engine.timing import local_moment
from mauto.workflow.cron import parse_cron
from mauto.workflow.durations import parse_duration, parse_time_of_day


def _on(year: int, month: int, day: int) -> date:
    """The date, or the month's last day when it has fewer days (29 February in other years is the 28th)."""
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def date_occurrences(value: Any, spec: dict, tz: ZoneInfo, start: datetime, end: datetime) -> Iterator[datetime]:
    """Moments in [start, end) when a date field comes round: `every` year/month/once, `at`, `offset`."""
    if value is None:
        return
    if isinstance(value, datetime):
        value = value.astimezone(tz).date()
    elif isinstance(value, str):
        try:
            value = date.fromisoformat(value[:10])
        except ValueError:
            return
    at = parse_time_of_day(spec.get("at", "09:00"))
    offset = parse_duration(spec.get("offset", "0d"), signed=True)
    every = spec.get("every", "year")
    first = (start - abs(offset) - timedelta(days=2)).astimezone(tz).date()
    last = (end + abs(offset) + timedelta(days=2)).astimezone(tz).date()
    if every == "once":
        days = [value]
    elif every == "month":
        days = []
        year, month = first.year, first.month
        while (year, month) <= (last.year, last.month):
            days.append(_on(year, month, value.day))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    else:
        days = [_on(year, value.month, value.day) for year in range(first.year, last.year + 1)]
    for day in days:
        moment = local_moment(day, at, tz) + offset
        if start <= moment < end:
            yield moment


def schedule_fires(cron: str, tz: ZoneInfo, start: datetime, end: datetime) -> Iterator[datetime]:
    """Moments in [start, end) when a cron line fires, in `tz` (APScheduler computes them, as in the daemon)."""
    trigger = parse_cron(cron, str(tz))
    previous = None
    moment = trigger.get_next_fire_time(previous, start)
    while moment is not None and moment < end:
        yield moment
        previous = moment
        moment = trigger.get_next_fire_time(previous, moment + timedelta(seconds=1))



