"""`wait: {until: …}`: a time of day (the next one to come) or an absolute date or date-time.

An absolute moment must lie within the times mauto handles (mauto.limits: years 1000 to 8999): past them,
the engine's date arithmetic would overflow.
"""
from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

from mauto.limits import RANGE_TEXT, LimitError, check_moment
from mauto.workflow.durations import DurationError, parse_time_of_day


class UntilError(ValueError):
    pass


def parse_until(text: str) -> time | date | datetime:
    """`09:00` is a time of day; `2026-12-24` a date; `2026-12-24T09:00` or with an offset a date-time."""
    if re.fullmatch(r"\d{1,2}:\d{2}", text):
        try:
            return parse_time_of_day(text)
        except DurationError as error:
            raise UntilError(str(error)) from None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise UntilError(f"`{text}` is not a real date; write YYYY-MM-DD") from None
        return _within(text, day, datetime.combine(day, time(0, 0)))
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})?", text):
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise UntilError(f"`{text}` is not a real date-time; write YYYY-MM-DDTHH:MM with an optional "
                             "offset, e.g. 2026-12-24T09:00:00+01:00") from None
        return _within(text, moment, moment)
    raise UntilError(f"`{text}` is neither a time of day (09:00) nor a date (2026-12-24) "
                     "nor a date-time (2026-12-24T09:00:00+01:00)")


def _within(text: str, value: date | datetime, moment: datetime) -> date | datetime:
    """`value` when `moment` (naive ones read as UTC: the zone moves them by hours, the bounds leave centuries)
    is within the times mauto handles; UntilError otherwise."""
    try:
        check_moment(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    except LimitError:
        raise UntilError(f"`{text}` is outside the times mauto handles ({RANGE_TEXT})") from None
    return value
