"""Time: zones, local times across daylight-saving changes, quiet hours, send days, blackout dates, frequency caps.

The moments the engine keeps (a wake-up, a deadline, a due date, the end of a cap's window) stay within the
times mauto handles (mauto.limits: before year 9000), so that every later sum of one of them and a
duration is still a date: a sum past them is a ValueError that says so, which fails that enrollment alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property, lru_cache
from zoneinfo import ZoneInfo

from mauto.limits import LATEST, RANGE_TEXT
from mauto.workflow.durations import format_duration

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def contact_zone(fields: dict, default: str) -> str:
    """The zone a contact's times are computed and shown in: their own when it is a real zone, else `default`."""
    own = fields.get("timezone")
    if isinstance(own, str) and own:
        try:
            zone(own)
            return own
        except (KeyError, ValueError, OSError):
            pass
    return default


def local_moment(day: date, at: time, tz: ZoneInfo) -> datetime:
    """`day` at `at` in `tz`, as an aware datetime, normalised.

    A wall time skipped by a daylight-saving change (02:30 on the
    spring-forward night in Paris) comes out shifted by the gap (03:30), as
    cron does; a wall time that happens twice (autumn) is its first occurrence.
    """
    return _wall(day, at, tz, 0).astimezone(UTC).astimezone(tz)


def _wall(day: date, at: time, tz: ZoneInfo, fold: int) -> datetime:
    """`datetime.combine(day, at).replace(tzinfo=tz, fold=fold)`, without `replace`'s cost (a microsecond)."""
    if at.fold != fold:
        at = at.replace(fold=fold)
    return datetime.combine(day, at, tz)


def later(moment: datetime, delta: timedelta) -> datetime:
    """`moment` plus `delta` of elapsed time, in `moment`'s zone.

    A day is 24 hours, across daylight-saving changes too (durations have a fixed length; `wait: {until:
    "09:00"}` is how a workflow asks for a wall-clock time). Plain `+` on a datetime whose tzinfo is a
    ZoneInfo adds wall-clock time instead, so the result would depend on how the caller's `now` was zoned.
    """
    return (moment.astimezone(UTC) + delta).astimezone(moment.tzinfo)


def later_within(moment: datetime, delta: timedelta, what: str) -> datetime:
    """`later(moment, delta)` for a moment the engine keeps; ValueError naming `what` (e.g. "the wait") when it
    would fall after the times mauto handles."""
    try:
        result = later(moment, delta)
    except OverflowError:
        result = None
    if result is None or result >= LATEST:
        length = f"{delta.days}d" if delta.days >= 7 and not delta.seconds else format_duration(delta)
        raise ValueError(f"{what} would end after the times mauto handles ({RANGE_TEXT}): "
                         f"{length} after {moment.isoformat()}")
    return result


def shifted(moment: datetime, delta: timedelta) -> datetime:
    """`moment` plus `delta` as `later` adds it, for the edge of a window: past the calendar's end (or before
    its start), the last (or first) moment datetime holds, in UTC: the window then reaches as far as there is."""
    try:
        return later(moment, delta)
    except OverflowError:
        return (datetime.max if delta > timedelta(0) else datetime.min).replace(tzinfo=UTC)


def next_time_of_day(after: datetime, at: time, tz: ZoneInfo, days: tuple[str, ...] | None = None) -> datetime:
    """The first moment at or after `after` whose local time in `tz` is `at` (on one of `days`, if given).

    Moments are compared as instants: Python compares two datetimes that share a ZoneInfo by their wall
    times, which is wrong in the hour that happens twice. A wall time that happens twice counts twice.
    """
    instant = after.astimezone(UTC)
    day = after.astimezone(tz).date()
    for _ in range(8 + 7):
        if days is None or DAYS[day.weekday()] in days:
            first = _wall(day, at, tz, 0).astimezone(UTC)  # as local_moment, compared in UTC
            if first >= instant:
                return first.astimezone(tz)
            repeat = _wall(day, at, tz, 1).astimezone(UTC)
            if repeat > first and repeat >= instant:  # the wall time happens twice that day: its second time
                return repeat.astimezone(tz)
        day += timedelta(days=1)
    raise ValueError("no allowed day")  # unreachable: days is never empty


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    @cached_property
    def reason(self) -> str:
        """Why a message moved out of them (formatting the times costs two microseconds: once per workflow)."""
        return f"quiet hours {self.start:%H:%M}–{self.end:%H:%M}"

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # across midnight


@dataclass(frozen=True)
class Cap:
    max: int
    per: timedelta


@dataclass(frozen=True)
class SendRules:
    """When a marketing message may go out, for one workflow."""

    quiet_hours: QuietHours | None = None
    send_days: tuple[str, ...] | None = None
    caps: dict | None = None  # channel -> Cap
    blackout: frozenset[date] | None = None  # days (in the contact's zone) nothing goes out: holidays

    def sends_on(self, day: date) -> bool:
        """Whether `day` (a local date) is a day marketing messages may go out on."""
        return (self.send_days is None or DAYS[day.weekday()] in self.send_days) and (
            self.blackout is None or day not in self.blackout)


def parse_blackout(dates: object) -> frozenset[date] | None:
    """`blackout_dates` as written (a list of `YYYY-MM-DD`; false or empty: none) as a set of dates.
    ValueError naming the first one that is not a date (the schema refuses them where they are written)."""
    if not dates:
        return None
    if not isinstance(dates, (list, tuple)):
        raise ValueError(f"blackout_dates must be a list of dates (YYYY-MM-DD), not `{dates}`")
    found = set()
    for text in dates:
        try:
            if not isinstance(text, str) or len(text) != 10:
                raise ValueError
            found.add(date.fromisoformat(text))
        except ValueError:
            raise ValueError(f"`{text}` is not a date; write YYYY-MM-DD, e.g. 2026-12-25") from None
    return frozenset(found)


def _next_sending_day(day: date, rules: SendRules, reasons: list[str]) -> date:
    """The first day after `day` (one no message may go out on) that one may, saying why `day` and the
    blackout dates passed on the way were skipped."""
    told_send_day = False  # a run of days off (a weekend) is told by its first day, as before blackouts
    # Every week has a send day and each blackout date takes one day away: a sending day comes within this.
    for _ in range(7 * (len(rules.blackout or ()) + 2)):
        if rules.blackout is not None and day in rules.blackout:
            reasons.append(f"blackout {day.isoformat()}")
        elif not told_send_day:
            reasons.append(f"{DAYS[day.weekday()]} is not a send day")
            told_send_day = True
        day += timedelta(days=1)
        if rules.sends_on(day):
            return day
    raise ValueError("no day to send on")  # unreachable: send_days is never empty


def next_allowed(at: datetime, tz: ZoneInfo, rules: SendRules) -> tuple[datetime, list[str]]:
    """The first moment at or after `at` outside quiet hours, on a send day and off the blackout dates (each
    in `tz`, the contact's zone), and why it moved."""
    reasons: list[str] = []
    moment = at
    for _ in range(32):
        local = moment.astimezone(tz)
        if (rules.send_days is not None or rules.blackout is not None) and not rules.sends_on(local.date()):
            moment = local_moment(_next_sending_day(local.date(), rules, reasons), time(0, 0), tz)
            continue
        quiet = rules.quiet_hours
        if quiet is not None and quiet.contains(local.time()):  # time(): the wall time, without a zone
            moment = next_time_of_day(moment, quiet.end, tz)
            reasons.append(quiet.reason)
            continue
        return moment, reasons
    return moment, reasons


def cap_release(at: datetime, sent: list[datetime], cap: Cap) -> datetime | None:
    """None when one more message at `at` keeps within the cap; else the moment a slot frees up."""
    if len(sent) < cap.max:  # fewer messages than the cap in all: fewer in any window too
        return None
    start = shifted(at, -cap.per)
    window = sorted(moment for moment in sent if start < moment <= at)
    if len(window) < cap.max:
        return None
    return later_within(window[len(window) - cap.max], cap.per, "the frequency cap's window")
