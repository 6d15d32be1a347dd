"""When date and schedule triggers come due (pure: the caller gives the period)."""
from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mauto.engine.timing import local_moment, shifted
from mauto.limits import RANGE_TEXT
from mauto.workflow.cron import parse_cron
from mauto.workflow.durations import parse_duration, parse_time_of_day

_MARGIN = timedelta(days=2)  # a local date is at most a day away from its UTC one; a day more for DST


def _on(year: int, month: int, day: int) -> date:
    """The date, or the month's last day when it has fewer days (29 February in other years is the 28th)."""
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def _local_day(moment: datetime, tz: ZoneInfo, margin: timedelta) -> date:
    """The date of `moment` in `tz`, moved by `margin` days, kept within the calendar."""
    try:
        return moment.astimezone(tz).date() + margin
    except OverflowError:  # a window edge at the calendar's end: it reaches as far as there is
        return date.max if margin > timedelta(0) else date.min


def date_occurrences(value: Any, spec: dict, tz: ZoneInfo, start: datetime, end: datetime) -> Iterator[datetime]:
    """Moments in [start, end) when a date field comes round: `every` year/month/once, `at`, `offset`.

    Only the days whose moment can fall in the window are looked at (the window moved back by the offset), so
    a long offset costs no more than a short one, and a date at the calendar's edge (a birthday in 8999) is
    never pushed past it. A datetime value too close to the edge to be read in `tz` is a ValueError naming
    the contact's field.
    """
    if value is None:
        return
    if isinstance(value, datetime):
        try:
            value = value.astimezone(tz).date()
        except OverflowError:
            raise ValueError(f"the contact's `{spec.get('field')}` ({value.isoformat()}) is outside the times mauto "
                             f"handles ({RANGE_TEXT})") from None
    elif isinstance(value, str):
        try:
            value = date.fromisoformat(value[:10])
        except ValueError:
            return
    at = parse_time_of_day(spec.get("at", "09:00"))
    offset = parse_duration(spec.get("offset", "0d"), signed=True)
    every = spec.get("every", "year")
    first = _local_day(shifted(start, -offset), tz, -_MARGIN)
    last = _local_day(shifted(end, -offset), tz, _MARGIN)
    if every == "once":
        days = [value] if first <= value <= last else []
    elif every == "month":
        days = []
        year, month = first.year, first.month
        while (year, month) <= (last.year, last.month):
            days.append(_on(year, month, value.day))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    else:
        days = [_on(year, value.month, value.day) for year in range(first.year, last.year + 1)]
    for day in days:
        try:
            moment = local_moment(day, at, tz) + offset
        except OverflowError:  # beyond the calendar, so beyond the window
            continue
        if start <= moment < end:
            yield moment


def schedule_fires(cron: str, tz: ZoneInfo, start: datetime, end: datetime) -> Iterator[datetime]:
    """Moments in [start, end) when a cron line fires, in `tz` (APScheduler computes them, as in the daemon)."""
    trigger = parse_cron(cron, str(tz))
    previous = None
    moment = trigger.get_next_fire_time(previous, start)  # None past the calendar's end (APScheduler's own check)
    while moment is not None and moment < end:
        yield moment
        previous = moment
        moment = trigger.get_next_fire_time(previous, moment + timedelta(seconds=1))


def date_due(spec: dict, value: Any, tz: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """(moment, why) for each time in [start, end) a `date` trigger comes round for one contact whose field
    holds `value`: what both drivers queue. ValueError when the value is not a date (stored by hand, or
    before imports checked it), naming the field."""
    if value is not None and not isinstance(value, date):
        shown = repr(value)
        raise ValueError(f"field `{spec['field']}` holds {shown[:80]}, not a date")
    return [(moment, f"{spec['field']} comes round") for moment in date_occurrences(value, spec, tz, start, end)]


def schedule_due(spec: dict, tz: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """(moment, why) for each time in [start, end) a `schedule` trigger fires (for every contact)."""
    return [(moment, f"schedule {spec['cron']}") for moment in schedule_fires(spec["cron"], tz, start, end)]
