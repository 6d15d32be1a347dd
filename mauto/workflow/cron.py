"""Cron lines for `schedule` triggers, parsed by APScheduler (the daemon fires them with it)."""
from __future__ import annotations

import re
from functools import lru_cache


class CronError(ValueError):
    pass


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _day_names(field: str) -> str:
    """Cron's numeric days (0 or 7 Sunday, 1 Monday) as names: APScheduler 3 reads 0 as Monday."""
    return re.sub(r"(?<![/\d])([0-7])(?!\d)", lambda match: _DAYS[int(match.group(1))], field)


@lru_cache(maxsize=256)
def parse_cron(line: str, timezone: str = "UTC"):
    """An APScheduler CronTrigger for a five-field cron line, or CronError saying what is wrong."""
    from apscheduler.triggers.cron import CronTrigger  # imported only when a workflow has a schedule

    fields = line.split()
    if len(fields) == 5:
        fields[4] = _day_names(fields[4])
    if len(fields) != 5:
        raise CronError(f"`{line}` has {len(fields)} field{'s' if len(fields) != 1 else ''}; a cron line has five: "
                        "minute hour day-of-month month day-of-week, e.g. \"0 9 * * MON\"")
    try:
        return CronTrigger.from_crontab(" ".join(fields), timezone=timezone)
    except (ValueError, TypeError, LookupError) as error:
        names = ("minute", "hour", "day-of-month", "month", "day-of-week")
        detail = str(error)
        for name, value in zip(names, line.split(), strict=False):
            try:
                CronTrigger.from_crontab(" ".join((_day_names(value) if name == "day-of-week" else value)
                                                  if n == name else "*" for n in names), timezone=timezone)
            except (ValueError, TypeError, LookupError):
                raise CronError(f"`{line}`: the {name} field `{value}` is not valid ({detail})") from None
        raise CronError(f"`{line}` is not a valid cron line ({detail})") from None
