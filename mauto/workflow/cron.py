"""Cron lines for `schedule` triggers, parsed by APScheduler (the daemon fires them with it)."""
from __future__ import annotations

from functools import lru_cache


class CronError(ValueError):
    pass


@lru_cache(maxsize=256)
def parse_cron(line: str, timezone: str = "UTC"):
    """An APScheduler CronTrigger for a five-field cron line, or CronError saying what is wrong."""
    from apscheduler.triggers.cron import CronTrigger  # imported only when a workflow has a schedule

    fields = line.split()
    if len(fields) != 5:
        raise CronError(f"`{line}` has {len(fields)} field{'s' if len(fields) != 1 else ''}; a cron line has five: "
                        "minute hour day-of-month month day-of-week, e.g. \"0 9 * * MON\"")
    try:
        return CronTrigger.from_crontab(line, timezone=timezone)
    except (ValueError, TypeError, LookupError) as error:
        names = ("minute", "hour", "day-of-month", "month", "day-of-week")
        detail = str(error)
        for name, value in zip(names, fields):
            try:
                CronTrigger.from_crontab(" ".join(value if n == name else "*" for n in names), timezone=timezone)
            except (ValueError, TypeError, LookupError):
                raise CronError(f"`{line}`: the {name} field `{value}` is not valid ({detail})") from None
        raise CronError(f"`{line}` is not a valid cron line ({detail})") from None
