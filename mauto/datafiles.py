"""Rows from data files (YAML lists, JSON Lines, CSV), each with its line number, and typed values.

Used for `mauto simulate`'s sample contacts and events, and for imports into the store.
"""
from __future__ import annotations

import csv
import io
import json
import re
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

from mauto.errors import MautoError, YamlError
from mauto.workflow.durations import DurationError, parse_duration
from mauto.workflow.loader import decode, parse

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
LIST_SEPARATOR = ";"  # list fields in CSV cells: tags "vip;newsletter"


class DataError(MautoError):
    """A bad row in a data file: names the file, the line and the field."""

    exit_code = 1


def data_format(path: str | Path) -> str:
    suffix = Path(str(path)).suffix.lower()
    found = FORMATS.get(suffix)
    if found is None:
        raise DataError(f"unknown data file type `{suffix or path}`; use .yaml, .jsonl or .csv", str(path))
    return found


def read_rows(path: str | Path, fmt: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) for every row of a data file; `-` reads standard input (give `fmt`)."""
    shown = str(path)
    fmt = fmt or data_format(path)
    if fmt == "yaml":
        raw = sys.stdin.buffer.read() if shown == "-" else _read(path)
        try:
            document = parse(decode(raw, shown), shown)
        except YamlError as error:
            raise DataError(error.message, shown, error.line, error.col) from None
        rows = document.data if document.data is not None else []
        if not isinstance(rows, list):
            raise DataError("expected a list of rows (`- {id: c1, ...}`)", shown, 1, 1)
        for index, row in enumerate(rows):
            line = document.pos((index,)).line
            if not isinstance(row, dict):
                raise DataError("each row must be a mapping", shown, line, document.pos((index,)).col)
            yield line, row
        return
    stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig") if shown == "-" else _open(path)
    with stream:
        if fmt == "jsonl":
            for number, text in enumerate(stream, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as error:
                    raise DataError(f"invalid JSON: {error.msg}", shown, number, error.colno) from None
                if not isinstance(row, dict):
                    raise DataError("each line must be a JSON object", shown, number, 1)
                yield number, row
        else:
            reader = csv.DictReader(stream)
            for row in reader:
                yield reader.line_num, {key: value for key, value in row.items() if key is not None and value != ""}


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise DataError(f"cannot read: {error.strerror}", str(path)) from None


def _open(path: str | Path):
    try:
        return open(path, encoding="utf-8-sig", newline="")  # Excel writes CSV with a byte order mark
    except OSError as error:
        raise DataError(f"cannot read: {error.strerror}", str(path)) from None


# --- values ---------------------------------------------------------------------

_RELATIVE = re.compile(r"([+-])(.+)")


def parse_time(value: Any, start: datetime | None, zone: str) -> datetime:
    """An absolute ISO 8601 time (naive ones in `zone`) or, with `start`, one relative to it: `+2d3h`, `-40d`."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(zone))
    if not isinstance(value, str):
        raise ValueError(f"`{value}` is not a time")
    relative = _RELATIVE.fullmatch(value.strip())
    if relative and start is not None:
        sign, amount = relative.groups()
        try:
            delta = parse_duration(amount)
        except DurationError as error:
            raise ValueError(str(error)) from None
        return start + delta if sign == "+" else start - delta
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"`{value}` is not an ISO 8601 time (2026-03-02T10:00:00+01:00) "
                         "or a time relative to the start (+2h, -40d)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(zone))


def coerce(value: Any, declared: Any, zone: str) -> Any:
    """A value as its declared contact-field type; ValueError saying why not."""
    if value is None:
        return None
    if isinstance(declared, dict):
        allowed = declared.get("enum", [])
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}, not `{value}`")
        return value
    if declared == "string":
        return value if isinstance(value, str) else str(value)
    if declared == "integer":
        if isinstance(value, bool):
            raise ValueError(f"must be an integer, not `{value}`")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"[-+]?\d+", value.strip()):
            return int(value)
        raise ValueError(f"must be an integer, not `{value}`")
    if declared == "number":
        if isinstance(value, bool):
            raise ValueError(f"must be a number, not `{value}`")
        if isinstance(value, (int, float)):
            return value
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number, not `{value}`") from None
    if declared == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"must be true or false, not `{value}`")
    if declared == "date":
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        try:
            return date.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError(f"`{value}` is not a date (YYYY-MM-DD)") from None
    if declared == "datetime":
        try:
            return parse_time(value, None, zone)
        except ValueError:
            raise ValueError(f"`{value}` is not a date-time (2026-03-02T10:00:00+01:00)") from None
    if declared == "list":
        if isinstance(value, list):
            return value
        if isinstance(value, str):
            return [item.strip() for item in value.split(LIST_SEPARATOR) if item.strip()]
        raise ValueError(f"must be a list, not `{value}`")
    return value
