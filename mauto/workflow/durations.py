"""Durations (`30m`, `1h`, `3d`, `2w`, `1h30m`, ISO 8601 `P3D`) and times of day.

A duration is at most mauto.limits.LONGEST (about 1,000 years): a longer one would overflow the engine's
date arithmetic, so it is refused here, where every duration of a file or an option is read.
"""
from __future__ import annotations

import re
from datetime import time, timedelta
from functools import lru_cache

from mauto.limits import LimitError, check_duration

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_COMPACT = re.compile(r"(?:\d+[wdhms])+")
_COMPACT_PART = re.compile(r"(\d+)([wdhms])")
_ISO = re.compile(r"P(?:(?P<w>\d+)W|(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?)")
_TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_SPELLED = re.compile(r"\s*(\d+)\s*(second|sec|minute|min|hour|hr|day|week|wk|[smhdw])s?\s*", re.IGNORECASE)
_SPELLED_UNIT = {"second": "s", "sec": "s", "minute": "m", "min": "m", "hour": "h", "hr": "h",
                 "day": "d", "week": "w", "wk": "w",
                 "s": "s", "m": "m", "h": "h", "d": "d", "w": "w"}


# A network timeout (a webhook's, a channel's): a socket cannot wait more than about 292 years, and a tick
# waiting even an hour for one answer is already stuck.
LONGEST_TIMEOUT = timedelta(hours=1)
# More digits than this in one amount is longer than LONGEST whatever the unit; int() of thousands of digits
# is itself refused by Python.
_MAX_DIGITS = 15


class DurationError(ValueError):
    """A string that is not a duration, or one too long; the message says how to write it."""


class DurationTooLong(DurationError):
    """A duration written right but longer than mauto handles (mauto.limits.LONGEST)."""


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
        parts = [(amount, unit) for amount, unit in _COMPACT_PART.findall(body)]
        return _bounded(text, sign, parts)
    iso = _ISO.fullmatch(body)
    if iso and body not in ("P", "PT") and not body.endswith("T"):
        return _bounded(text, sign, [(iso.group(unit), unit) for unit in "wdhms" if iso.group(unit)])
    raise DurationError(_advice(text))


def _bounded(text: str, sign: int, parts: list[tuple[str, str]]) -> timedelta:
    """The duration of `parts` ((amount, unit) pairs), or DurationError when it is longer than mauto handles."""
    if any(len(amount.lstrip("0")) > _MAX_DIGITS for amount, _ in parts):
        delta = timedelta.max
    else:
        seconds = sum(int(amount) * _UNITS[unit] for amount, unit in parts)
        try:
            delta = timedelta(seconds=sign * seconds)
        except OverflowError:  # past timedelta's range: longer than anything mauto handles
            delta = timedelta.max
    try:
        return check_duration(delta, _shown(text))
    except LimitError as error:
        raise DurationTooLong(str(error)) from None


def _shown(text: str) -> str:
    """`text` for a message: a long one cut short, so that a mistake never fills the screen."""
    return text if len(text) <= 40 else text[:30] + "…"


def check_timeout(text: str) -> timedelta:
    """A network timeout (`10s`): a duration longer than 0s and at most LONGEST_TIMEOUT; DurationError otherwise."""
    delta = parse_duration(text)
    if delta <= timedelta(0):
        raise DurationError(f"a timeout of `{text}` gives up before anything is sent; write at least 1s")
    if delta > LONGEST_TIMEOUT:
        raise DurationError(f"a timeout of `{text}` is longer than a request may wait "
                            f"(at most {format_duration(LONGEST_TIMEOUT)})")
    return delta


def _advice(text: str) -> str:
    if len(text) > 40:
        return f"`{_shown(text)}` is not a duration; write a number and a unit (s, m, h, d, w), e.g. 30m, 1h, 3d, 2w"
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
