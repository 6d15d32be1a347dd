"""`wait: {until: …}`: a time of day (the next one to come) or an absolute date or date-time."""
from __future__ import annotations

import re
from datetime import date, datetime, time

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
            return date.fromisoformat(text)
        except ValueError:
            raise UntilError(f"`{text}` is not a real date; write YYYY-MM-DD") from None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})?", text):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise UntilError(f"`{text}` is not a real date-time; write YYYY-MM-DDTHH:MM with an optional "
                             "offset, e.g. 2026-12-24T09:00:00+01:00") from None
    raise UntilError(f"`{text}` is neither a time of day (09:00) nor a date (2026-12-24) "
                     "nor a date-time (2026-12-24T09:00:00+01:00)")
