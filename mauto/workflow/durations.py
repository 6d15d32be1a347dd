"""Durations (`30m`, `1h`, `3d`, `2w`, `1h30m`, ISO 8601 `P3D`) and times of day."""
from __future__ import annotations

import re
from datetime import time, timedelta
from functools import lru_cache

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_COMPACT = re.compile(r"(?:\d+[wdhms])+")
_COMPACT_PART = re.compile(r"(\d+)([wdhms])")
_ISO = re.compile(r"P(?:(?P<w>\d+)W|(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?)")
_TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_SPELLED = re.compile(r"\s*(\d+)\s*(second|sec|minute|min|hour|hr|day|week|wk|[smhdw])s?\s*", re.IGNORECASE)
_SPELLED_UNIT = {"second": "s", "sec": "s", "minute": "m", "min": "m", "hour": "h", "hr": "h",
                 "day": "d", "week": "w", "wk": "w",
                 "s": "s", "m": "m", "h": "h", "d": "d", "w": "w"}


class DurationError(ValueError):
    """A string that is not a duration; the message says how to write it."""


@lru_cache(maxsize=4096)
def parse_duration(text: str, signed: bool = False) -> timedelta:
    """Parse a duration; with `signed`, a leading `-` makes it negative."""
    if not isinstance(text, str):
        raise DurationError(f"`{text}` is not a duration; write a number and a unit, e.g. 3d")
    body = text
    sign = 1
    if signed and body.startswith("-"):
        sign, body = -1, body[1:]
    if _COMPACT.fullmatch(body):
        seconds = sum(int(amount) * _UNITS[unit] for amount, unit in _COMPACT_PART.findall(body))
        return timedelta(seconds=sign * seconds)
    iso = _ISO.fullmatch(body)
    if iso and body not in ("P", "PT") and not body.endswith("T"):
        seconds = sum(int(iso.group(unit) or 0) * _UNITS[unit] for unit in "wdhms")
        return timedelta(seconds=sign * seconds)
    raise DurationError(_advice(text))


def _advice(text: str) -> str:
    spelled = _SPELLED.fullmatch(text)
    if spelled:
        amount, unit = spelled.groups()
        return f"`{text}` is not a duration; write `{amount}{_SPELLED_UNIT[unit.lower()]}`"
    if re.fullmatch(r"\d+", text):
        return f"`{text}` has no unit; write e.g. `{text}d` (units: s, m, h, d, w)"
    if re.fullmatch(r"P.*[YM].*", text) and "T" not in text.split("M")[0]:
        return f"`{text}`: months and years have no fixed length; write days or weeks, e.g. 30d"
    if re.fullmatch(r"(?:\d+[WDHMS])+", text):
        return f"`{text}` is not a duration; units are lowercase: `{text.lower()}`"
    return f"`{text}` is not a duration; write a number and a unit (s, m, h, d, w), e.g. 30m, 1h, 3d, 2w"


def parse_time_of_day(text: str) -> time:
    """Parse `HH:MM` (24-hour)."""
    match = _TIME_OF_DAY.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise DurationError(f"`{text}` is not a time of day; write 24-hour HH:MM, e.g. 09:00 or 21:30")
    return time(int(match.group(1)), int(match.group(2)))


def format_duration(delta: timedelta) -> str:
    """The compact form of a duration: 90 minutes is `1h30m`."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts = []
    for unit, size in _UNITS.items():
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return sign + "".join(parts)
