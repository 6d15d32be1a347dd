"""The times and durations mauto handles, checked at every way in (lint, imports, options).

Python's datetime ends at 9999-12-31: a moment near it, plus a wait, overflows, and an overflow inside a tick
would fail an item that lint or the import could have refused with its line. These bounds leave room for any
sum the engine makes of a bounded moment and bounded durations.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)  # the first moment mauto takes (an import, a `wait: until`)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)  # the moment after the last one it takes
LONGEST = timedelta(days=365_000)  # about 1,000 years: the longest duration (a wait, a timeout, --for)
LONGEST_TEXT = "365000d (about 1,000 years)"
RANGE_TEXT = "years 1000 to 8999"


class LimitError(ValueError):
    """A moment or a duration outside what mauto handles; the message says what it takes."""


def check_moment(moment: datetime, what: str = "time") -> datetime:
    """`moment` itself when it is within EARLIEST..LATEST (an aware datetime); LimitError otherwise."""
    try:
        inside = EARLIEST <= moment < LATEST
    except (OverflowError, TypeError):  # a naive one, or one whose UTC form is past datetime's range
        inside = False
    if not inside:
        raise LimitError(f"{what} `{moment.isoformat()}` is outside the times mauto handles ({RANGE_TEXT})")
    return moment


def check_duration(duration: timedelta, text: str | None = None) -> timedelta:
    """`duration` itself when its size is at most LONGEST; LimitError otherwise."""
    if abs(duration) > LONGEST:
        shown = text if text is not None else str(duration)
        raise LimitError(f"`{shown}` is longer than mauto handles (at most {LONGEST_TEXT})")
    return duration
