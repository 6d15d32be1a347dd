"""Rows from data files (YAML lists, JSON Lines, CSV), each with its line number, and typed values.

Used for `mauto simulate`'s sample contacts and events, and for imports into the store.
"""
from __future__ import annotations

import csv
import functools
import itertools
import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mauto.errors import ExitCode, MautoError, YamlError
from mauto.limits import EARLIEST, LATEST, RANGE_TEXT, LimitError
from mauto.workflow.durations import DurationError, parse_duration
from mauto.workflow.loader import MAX_DEPTH as LOADER_MAX_DEPTH
from mauto.workflow.loader import Pos, _core, parse

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
LIST_SEPARATOR = ";"  # list fields in CSV cells: tags "vip;newsletter"


class DataError(MautoError):
    """A bad row in a data file: names the file, the line and the field."""

    exit_code = ExitCode.FINDINGS


def data_format(path: str | Path) -> str:
    suffix = Path(str(path)).suffix.lower()
    found = FORMATS.get(suffix)
    if found is None:
        raise DataError(f"unknown data file type `{suffix or path}`; use .yaml, .jsonl or .csv", str(path))
    return found


# --- reading ----------------------------------------------------------------------
#
# Every data file is read as UTF-8 (a byte order mark is skipped), line by line from its bytes, so that an
# undecodable byte is reported at its own line and column and CSV and JSON Lines stream whatever their size.
# A problem with one row is yielded as (line, DataError) and reading goes on; a problem with the file (its
# encoding, its CSV header, an unterminated quote) is raised.

MAX_JSON_LINE = 1 << 20  # bytes in one JSON line: a longer one is a bad row
MAX_CSV_LINE = 16 << 20  # bytes in one physical CSV line: a longer one is a bad file
MAX_DEPTH = LOADER_MAX_DEPTH  # levels of lists and objects inside a row, as in every mauto YAML file
SMALLEST_INTEGER, LARGEST_INTEGER = -(1 << 63), (1 << 63) - 1  # what SQLite stores as an integer

_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"), (b"\xfe\xff", "UTF-16"),
         (b"\xff\xfe", "UTF-16"))
_CSV_END = "\udfff"  # fed to the CSV reader after the last line; strict UTF-8 text never holds a surrogate
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")  # where an old Mac line break (a lone CR) ends a line
_SURROGATE = re.compile("[\ud800-\udfff]")


def iter_rows(source: str | Path, fmt: str, shown: str | None = None, *,
              as_written: bool = False) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """(line, row) for each row of a data file (`-`: standard input), or (line, DataError) for a bad row, so that
    reading goes on after it; a DataError is raised for a file that cannot be read as a whole.

    A row's values are checked for what no field can hold: integers beyond SQLite's 64 bits, NaN and
    infinities, lone surrogates, nesting deeper than MAX_DEPTH. With `as_written`, a plain YAML scalar at the
    top level of a row that YAML would read as a number or a boolean comes as the text written (`+33612345678`,
    `0612345678`, `true`), for the declared field types to decide."""
    shown = str(source) if shown is None else shown
    if fmt == "yaml":
        yield from _yaml_rows(_read(source), shown, as_written)
        return
    with open_bytes(source) as binary:
        if fmt == "jsonl":
            yield from _jsonl_rows(binary, shown)
        elif fmt == "csv":
            yield from csv_rows(text_lines(binary, shown, MAX_CSV_LINE), shown)
        else:
            raise DataError(f"unknown data format `{fmt}`; use csv, jsonl or yaml", shown)


def read_rows(path: str | Path, fmt: str | None = None, *,
              as_written: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) for every row of a data file; `-` reads standard input (give `fmt`). The first bad row is
    raised as a DataError (see `iter_rows`)."""
    for line, row in iter_rows(path, fmt or data_format(path), as_written=as_written):
        if isinstance(row, DataError):
            raise row
        yield line, row


def _read(path: str | Path) -> bytes:
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise DataError(f"cannot read: {error.strerror}", str(path)) from None


class _Stdin:
    """Standard input's bytes, left open when reading is done."""

    def __enter__(self) -> Any:
        return sys.stdin.buffer

    def __exit__(self, *exc: object) -> None:
        return None


def open_bytes(path: str | Path) -> Any:
    """The file's bytes (standard input's for `-`), for `with`."""
    if str(path) == "-":
        return _Stdin()
    try:
        return open(path, "rb")
    except OSError as error:
        raise DataError(f"cannot read: {error.strerror}", str(path)) from None


def _first_line(raw: bytes, shown: str) -> bytes:
    """The start of a file (its first line, or all of it) without a UTF-8 byte order mark (Excel writes one); a
    file in another encoding refused."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:]
    for mark, encoding in _BOMS:
        if raw.startswith(mark):
            raise DataError(f"not UTF-8 text: the file starts with a {encoding} byte order mark; "
                            "save it as UTF-8", shown, 1, 1)
    if raw[:1] == b"\x00" or raw[1:2] == b"\x00":
        raise DataError("not UTF-8 text: NUL bytes in every other place look like UTF-16 without a byte order "
                        "mark; save the file as UTF-8", shown, 1, 1)
    return raw


def _not_utf8(raw: bytes, error: UnicodeDecodeError, shown: str, line: int) -> DataError:
    """The error for line `line` (bytes `raw`), which does not decode: the first bad byte and its column."""
    col = len(raw[:error.start].decode("utf-8", "replace")) + 1
    return DataError(f"not UTF-8 text (byte 0x{raw[error.start]:02x} cannot be decoded); save the file as UTF-8",
                     shown, line, col)


def decode_text(raw: bytes, shown: str) -> str:
    """A whole file's bytes as text: UTF-8, a byte order mark skipped, or a DataError at the first bad byte."""
    raw = _first_line(raw, shown)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        start = raw.rfind(b"\n", 0, error.start) + 1
        line = raw.count(b"\n", 0, error.start) + 1
        error.start -= start
        raise _not_utf8(raw[start:], error, shown, line) from None


def text_lines(binary: Any, shown: str, limit: int) -> Iterator[str]:
    """The lines of a byte stream as text, each with its line break: a lone CR ends a line too, as in a file
    opened with newline="". A line longer than `limit` bytes or an undecodable byte is a DataError at its line."""
    readline = functools.partial(binary.readline, limit + 1)
    number = 0
    for raw in iter(readline, b""):
        number += 1
        if number == 1:
            raw = _first_line(raw, shown)
        if len(raw) > limit and raw[-1:] != b"\n":
            raise DataError(f"line longer than {limit >> 20} MiB", shown, number)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _not_utf8(raw, error, shown, number) from None
        cr = text.find("\r")
        if cr == -1 or cr == len(text) - 1 or (cr == len(text) - 2 and text[-1] == "\n"):
            yield text
            continue
        pieces = _LONE_CR.split(raw)
        yield pieces[0].decode("utf-8")
        for piece in pieces[1:]:
            if piece:
                number += 1
                yield piece.decode("utf-8")


def _jsonl_rows(binary: Any, shown: str) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    readline = functools.partial(binary.readline, MAX_JSON_LINE + 1)
    number = 0
    decode = _CHECKING_DECODER.decode
    for raw in iter(readline, b""):
        number += 1
        if number == 1:
            raw = _first_line(raw, shown)
        if len(raw) > MAX_JSON_LINE and raw[-1:] != b"\n":
            while True:  # the rest of the line, read and dropped a piece at a time
                more = binary.readline(MAX_JSON_LINE)
                if not more or more[-1:] == b"\n":
                    break
            yield number, DataError(f"line longer than {MAX_JSON_LINE >> 20} MiB", shown, number)
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _not_utf8(raw, error, shown, number) from None
        if text.isspace():
            continue
        suspect = False  # a number the decoder refused: the row is read again and its values checked
        try:
            row = decode(text)
        except (ValueError, RecursionError) as error:
            row = _json_problem(text, error, shown, number)
            if isinstance(row, DataError):
                yield number, row
                continue
            suspect = True
        if type(row) is not dict:
            yield number, DataError("each line must be a JSON object", shown, number, 1)
            continue
        escapes = "\\u" in text  # the only way a lone surrogate gets into strictly decoded UTF-8
        if suspect or escapes or text.count("[") + text.count("{") > MAX_DEPTH:
            problem = value_problem(row, escapes)
            if problem is not None:
                yield number, DataError(problem, shown, number)
                continue
        yield number, row


class _HugeInteger(str):
    """An integer literal too long for int(): its digits, for the message."""


def _integer(digits: str) -> int | _HugeInteger:
    return _HugeInteger(digits) if len(digits) > 4000 else int(digits)


_HUGE_DECODER = json.JSONDecoder(parse_int=_integer)


class _Refused(ValueError):
    """A number no field can hold, met while decoding: the line is read again to say where."""


def _checked_integer(digits: str) -> int:
    if len(digits) < 19:  # at most 18 digits: within 64 bits
        return int(digits)
    value = int(digits)  # ValueError past int()'s 4,300 digits
    if SMALLEST_INTEGER <= value <= LARGEST_INTEGER:
        return value
    raise _Refused(digits)


def _checked_float(text: str) -> float:
    value = float(text)
    if value - value == 0.0:  # finite (1e400 is an infinity)
        return value
    raise _Refused(text)


def _refused_constant(name: str) -> Any:
    raise _Refused(name)  # NaN, Infinity, -Infinity: JSON has no such numbers, Python's json takes them


class _Twice(ValueError):
    """A key given twice in one JSON object (Python's json keeps the last without a word)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    made = dict(pairs)
    if len(made) != len(pairs):
        from mauto.workflow.schema import first_duplicate

        raise _Twice(first_duplicate(key for key, _ in pairs))
    return made


# Numbers are checked as they are decoded (the hooks cost a call per number; checking every value of every row
# afterwards cost more, measured); NaN and Infinity never come out as numbers.
_CHECKING_DECODER = json.JSONDecoder(parse_int=_checked_integer, parse_float=_checked_float,
                                     parse_constant=_refused_constant, object_pairs_hook=_object)


def decode_json(text: str) -> Any:
    """One JSON text decoded as `mauto events ingest` decodes a line: numbers outside 64 bits, NaN, infinities
    and a key given twice are refused (ValueError saying so), nesting past MAX_DEPTH too. Objects decoded from
    text with `\\u` escapes still need `value_problem` (a lone surrogate)."""
    try:
        return _CHECKING_DECODER.decode(text)
    except (ValueError, RecursionError) as error:
        found = _json_problem(text, error, "", 0)
        if isinstance(found, DataError):
            raise ValueError(found.message) from None
        # A number the checking decoder refused: say which, by its field when it is in an object.
        problem = value_problem(found) if isinstance(found, dict) else None
        raise ValueError(problem or "a number outside what JSON mauto reads holds (64-bit integers, finite "
                                    "numbers)") from None


def _json_problem(text: str, error: Exception, shown: str, line: int) -> Any:
    """What decoding a line raising `error` means: a DataError, or the row read again leniently (NaN as a
    float, integers too long for int() as their digits) for value_problem to name the field at fault."""
    if isinstance(error, json.JSONDecodeError):
        return DataError(f"invalid JSON: {error.msg}", shown, line, error.colno)
    if isinstance(error, RecursionError):
        return DataError(f"nested more than {MAX_DEPTH} levels deep", shown, line)
    if isinstance(error, _Twice):  # which of the two was meant cannot be known: the row is refused
        return DataError(f"`{error}` is given twice in one object; keep one", shown, line)
    try:  # a number refused, or the ValueError of an integer of more digits than int() takes
        return _HUGE_DECODER.decode(text)
    except json.JSONDecodeError as invalid:
        return DataError(f"invalid JSON: {invalid.msg}", shown, line, invalid.colno)
    except RecursionError:
        return DataError(f"nested more than {MAX_DEPTH} levels deep", shown, line)
    except ValueError as other:
        return DataError(f"invalid JSON: {other}", shown, line)


def csv_rows(lines: Iterator[str], shown: str) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """(line, row) for each CSV row: empty cells left out, the cells a short row lacks as None, blank lines
    skipped. The line is the row's last (a quoted cell may span lines). A duplicate column name, a quote
    never closed, a cell over the csv module's size limit are file errors; cells past the header a row error."""
    reader = csv.reader(itertools.chain(lines, (_CSV_END,)))
    started = 1  # the line the current record starts on
    try:
        header: list[str] = []
        for header in reader:
            if header:
                break
            started = reader.line_num + 1
        if header == [_CSV_END]:  # no header: an empty file
            return
        if header[-1].endswith(_CSV_END):
            _unterminated(header, shown, started)
        _check_header(header, shown, started)
        width = len(header)
        started = reader.line_num + 1
        for cells in reader:
            if cells and cells[-1].endswith(_CSV_END):
                if cells != [_CSV_END]:
                    _unterminated(cells, shown, started)
                return
            if len(cells) == width:
                yield reader.line_num, {name: value for name, value in zip(header, cells, strict=True) if value != ""}
            elif cells:
                yield reader.line_num, _uneven(header, cells, shown, reader.line_num)
            started = reader.line_num + 1
    except csv.Error as error:
        if "field limit" in str(error):
            raise DataError(f"a cell of the row starting here is longer than {csv.field_size_limit():,} characters "
                            "(the CSV reader's limit); is a quote missing?", shown, started) from None
        raise DataError(f"invalid CSV: {error}", shown, reader.line_num) from None


def _check_header(header: list[str], shown: str, line: int) -> None:
    from mauto.addresses import shown as quoted

    seen: dict[str, int] = {}
    for index, name in enumerate(header, start=1):
        if name in seen and name != "":  # unnamed columns may repeat: a cell under one is an unknown field
            raise DataError(f"duplicate column `{quoted(name)}` (columns {seen[name]} and {index}); "
                            "a row could hold only one of its cells", shown, line)
        seen.setdefault(name, index)


def _uneven(header: list[str], cells: list[str], shown: str, line: int) -> dict[str, Any] | DataError:
    """A row of more or fewer cells than the header has columns."""
    from mauto.addresses import shown as quoted

    width = len(header)
    if len(cells) < width:
        row: dict[str, Any] = {name: value for name, value in zip(header, cells, strict=False) if value != ""}
        for name in header[len(cells):]:
            row[name] = None
        return row
    extra = [index for index in range(width, len(cells)) if cells[index].strip()]
    if extra:
        return DataError(f"{len(cells)} cells but the header has {width} columns: `{quoted(cells[extra[0]])}` "
                         f"(cell {extra[0] + 1}) has no column; is a separator or a quote missing?", shown, line)
    return {name: value for name, value in zip(header, cells, strict=False) if value != ""}  # empty cells past the end


def _unterminated(cells: list[str], shown: str, started: int) -> None:
    """Raise the error for a quoted cell never closed: the CSV reader took the rest of the file into it."""
    opened = started + sum(cell.count("\n") for cell in cells[:-1])
    body = cells[-1].removesuffix(_CSV_END)
    lines = body.count("\n") + (not body.endswith("\n"))
    raise DataError(f"a quote opened on this line is never closed: the rest of the file ({lines:,} line"
                    f"{'s' if lines != 1 else ''}) would be one cell; close it (a quote inside a quoted cell is "
                    "written twice: \"\")", shown, opened)


def _yaml_rows(raw: bytes, shown: str, as_written: bool) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    text = decode_text(raw, shown)
    try:
        document = parse(text, shown)
    except YamlError as error:
        raise DataError(error.message, shown, error.line, error.col) from None
    rows = document.data if document.data is not None else []
    if not isinstance(rows, list):
        raise DataError("expected a list of rows (`- {id: c1, ...}`)", shown, 1, 1)
    starts: list[int] = []
    for index, row in enumerate(rows):
        place = document.pos((index,))
        if not isinstance(row, dict):
            yield place.line, DataError("each row must be a mapping (`- {id: c1, ...}`)", shown, place.line,
                                        place.col)
            continue
        if as_written:
            for key, value in row.items():
                if type(value) in (int, float, bool):
                    if not starts:
                        starts = _line_starts(text)
                    row[key] = _as_written(text, starts, document.values.get((index, key)), value)
        problem = value_problem(row)
        if problem is not None:
            yield place.line, DataError(problem, shown, place.line)
            continue
        yield place.line, row


_YAML_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # what libyaml counts as a line break
_PLAIN_TOKEN = re.compile(r"[-+.0-9A-Za-z]+")  # every plain scalar YAML 1.2's core schema reads as non-text


def _line_starts(text: str) -> list[int]:
    return [0, *(match.end() for match in _YAML_BREAK.finditer(text))]


def _as_written(text: str, starts: list[int], place: Pos | None, value: Any) -> Any:
    """The text of a plain scalar as written in the file, when it is the one YAML read as `value`."""
    if place is None or place.style is not None or place.line > len(starts):
        return value
    token = _PLAIN_TOKEN.match(text, starts[place.line - 1] + place.col - 1)
    if token is None:  # a tag (`!!int 12`) or an anchor: typed on purpose
        return value
    written = token.group()
    read = _core(written)
    return written if type(read) is type(value) and repr(read) == repr(value) else value


# --- values every row must hold ---------------------------------------------------


def value_problem(row: dict[str, Any], escapes: bool = True) -> str | None:
    """What no field can hold in a row, in words (None when nothing): an integer outside SQLite's 64 bits, NaN
    or an infinity, text with a lone surrogate (`escapes`: the row came from text with `\\u` escapes), nesting
    deeper than MAX_DEPTH. Named by its field: `total`, `properties.items[2]`. Worded as the contact fields'
    own checks word the same problems."""
    for key, value in row.items():
        kind = type(value)
        if kind is str:
            continue
        if kind is int:
            if SMALLEST_INTEGER <= value <= LARGEST_INTEGER:
                continue
        elif kind is float:
            if value - value == 0.0:  # finite (NaN and infinities give NaN)
                continue
        elif kind is bool or value is None:
            continue
        problem = _nested_problem(key, value)
        if problem is not None:
            return problem
    if escapes:
        return _surrogate_problem(row)
    return None


def _nested_problem(key: str, value: Any) -> str | None:
    """The problem of a value that is not a plain text, boolean or 64-bit integer: a quick pass over it first,
    the names of where it is only for a value found bad."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.extend
    while stack:
        item, depth = pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if SMALLEST_INTEGER <= item <= LARGEST_INTEGER:
                continue
        elif kind is float:
            if item - item == 0.0:
                continue
        elif kind is dict and depth < MAX_DEPTH:
            push([(inner, depth + 1) for inner in item.values()])
            continue
        elif kind is list and depth < MAX_DEPTH:
            push([(inner, depth + 1) for inner in item])
            continue
        return _named_problem(key, value)
    return None


def _named_problem(key: str, value: Any) -> str | None:
    from mauto.addresses import shown

    stack: list[tuple[str, Any, int]] = [(shown(key), value, 0)]
    while stack:
        name, item, depth = stack.pop()
        kind = type(item)
        if kind is int or kind is _HugeInteger:
            if kind is _HugeInteger or not SMALLEST_INTEGER <= item <= LARGEST_INTEGER:
                return (f"field `{name}`: `{shown(item)}` is outside the integers mauto handles "
                        f"(64 bits: {SMALLEST_INTEGER} to {LARGEST_INTEGER})")
        elif kind is float:
            if not math.isfinite(item):
                written = "NaN" if math.isnan(item) else "Infinity" if item > 0 else "-Infinity"
                return f"field `{name}`: must be a finite number, not `{written}`"
        elif kind is list or kind is dict:
            if depth >= MAX_DEPTH:
                return f"field `{shown(key)}`: nested more than {MAX_DEPTH} levels deep"
            children = item.items() if kind is dict else enumerate(item)
            stack.extend((f"{name}.{shown(child)}" if kind is dict else f"{name}[{child}]", inner, depth + 1)
                         for child, inner in children)
    return None


def _surrogate_problem(row: dict[str, Any]) -> str | None:
    from mauto.addresses import shown

    stack: list[tuple[str, Any]] = [("", row)]
    while stack:
        name, item = stack.pop()
        kind = type(item)
        if kind is str:
            found = None if item.isascii() else _SURROGATE.search(item)
            if found is not None:
                quoted = f"`{shown(item)}` " if name == "id" else ""  # as the id's own check words it
                return (f"field `{shown(name)}`: {quoted}contains a lone surrogate (U+{ord(found.group()):04X}), "
                        "which is not text")
        elif kind is dict:
            for key, inner in item.items():
                found = None if key.isascii() else _SURROGATE.search(key)
                if found is not None:
                    return (f"{f'field `{shown(name)}`: ' if name else ''}the key `{shown(key)}` contains a lone "
                            f"surrogate (U+{ord(found.group()):04X}), which is not text")
                stack.append((f"{name}.{key}" if name else key, inner))
        elif kind is list:
            stack.extend((f"{name}[{index}]", inner) for index, inner in enumerate(item))
    return None


# --- values ---------------------------------------------------------------------

_RELATIVE = re.compile(r"([+-])(.+)")


def parse_time(value: Any, start: datetime | None, zone: str, notices: list[str] | None = None) -> datetime:
    """An absolute ISO 8601 time (naive ones in `zone`) or, with `start`, one relative to it: `+2d3h`, `-40d`.

    The moment must lie within mauto.limits (years 1000 to 8999): LimitError otherwise. A naive time that does
    not exist in `zone` (skipped when the clocks go forward) is taken shifted by the gap (02:30 is 03:30), one
    that happens twice (when they go back) as its first occurrence, as the engine reads local times; either way
    a sentence saying which moment was taken goes to `notices`, when given."""
    from datetime import UTC

    from mauto.addresses import shown
    from mauto.limits import check_duration, check_moment

    def localised(naive: datetime, written: str) -> datetime:
        if not EARLIEST.year <= naive.year < LATEST.year:  # before the zone's arithmetic, which overflows there
            raise LimitError(f"time `{shown(written)}` is outside the times mauto handles ({RANGE_TEXT})")
        tz = ZoneInfo(zone)
        first = naive.replace(tzinfo=tz, fold=0)
        if first.utcoffset() == naive.replace(tzinfo=tz, fold=1).utcoffset():
            return first
        taken = first.astimezone(UTC).astimezone(tz)
        if taken.replace(tzinfo=None) != naive:
            if notices is not None:
                notices.append(f"{shown(written)} does not exist in {zone} (clocks went forward); "
                               f"taken as {taken.isoformat()}")
            return taken
        if notices is not None:
            notices.append(f"{shown(written)} happens twice in {zone} (clocks went back); taken as the first, "
                           f"{first.isoformat()}")
        return first

    if isinstance(value, datetime):
        return check_moment(value if value.tzinfo else localised(value, value.isoformat()))
    if not isinstance(value, str):
        raise ValueError(f"`{shown(value)}` is not a time")
    written = value.strip()
    relative = _RELATIVE.fullmatch(written)
    if relative and start is not None:
        sign, amount = relative.groups()
        try:
            delta = check_duration(parse_duration(amount), amount)
            return check_moment(start + delta if sign == "+" else start - delta)
        except DurationError as error:
            raise ValueError(str(error)) from None
        except OverflowError:  # a duration past timedelta's range, or a sum past datetime's
            raise LimitError(f"`{shown(written)}` is outside the times mauto handles ({RANGE_TEXT})") from None
    try:
        moment = datetime.fromisoformat(written.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"`{shown(value)}` is not an ISO 8601 time (2026-03-02T10:00:00+01:00) "
                         "or a time relative to the start (+2h, -40d)") from None
    return check_moment(moment if moment.tzinfo else localised(moment, written))


def coerce(value: Any, declared: Any, zone: str, notices: list[str] | None = None) -> Any:
    """A value as its declared contact-field type; ValueError saying why not.

    Whatever the type, no text in the value may hold a NUL or a lone surrogate. Numbers must be finite and
    integers fit in 64 bits (SQLite's and most tools' integers); dates and times must lie within mauto.limits
    (years 1000 to 8999). `notices`, when given, receives what was read in a way worth saying (a local time
    that does not exist: see parse_time). A type mauto does not know leaves the value as it is."""
    from mauto.addresses import check_value

    if value is None:
        return None
    check_value(value)
    if isinstance(declared, dict):
        return _coerce_enum(value, declared)
    try:
        convert = _COERCERS.get(declared)
    except TypeError:  # an unhashable declaration (a list) names no type: the value as it is
        return value
    return value if convert is None else convert(value, zone, notices)


def _coerce_enum(value: Any, declared: dict[str, Any]) -> Any:
    from mauto.addresses import shown

    allowed = declared.get("enum", [])
    if value not in allowed:
        raise ValueError(f"must be one of {', '.join(map(str, allowed))}, not `{shown(value)}`")
    return value


def _coerce_string(value: Any, zone: str, notices: list[str] | None) -> str:
    if isinstance(value, (list, dict)):  # "['a', 'b']" is no one's first name: the file is wrong
        raise ValueError(f"must be a text, not a {'list' if isinstance(value, list) else 'mapping'}")
    return value if isinstance(value, str) else str(value)


_INTEGER_TEXT = re.compile(r"[-+]?\d+")


def _coerce_integer(value: Any, zone: str, notices: list[str] | None) -> int:
    if isinstance(value, bool):
        raise ValueError(f"must be an integer, not `{value}`")
    if isinstance(value, int) or (isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip())):
        return _int64(value)
    from mauto.addresses import shown

    raise ValueError(f"must be an integer, not `{shown(value)}`")


def _coerce_number(value: Any, zone: str, notices: list[str] | None) -> int | float:
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not `{value}`")
    if isinstance(value, int):
        return _int64(value)
    from mauto.addresses import shown

    try:
        real = value if isinstance(value, float) else float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"must be a number, not `{shown(value)}`") from None
    if not math.isfinite(real):
        raise ValueError(f"must be a finite number, not `{shown(value)}`")
    return real


def _int64(value: int | str) -> int:
    """An integer, or the text of one (signed decimal digits), within SQLite's 64 bits; ValueError otherwise."""
    # Compared by size before int(), which refuses texts of more than 4,300 digits.
    if not (isinstance(value, str) and len(value.strip().lstrip("+-").lstrip("0")) > 19):
        number = int(value)
        if SMALLEST_INTEGER <= number <= LARGEST_INTEGER:
            return number
    from mauto.addresses import shown

    raise ValueError(f"`{shown(value)}` is outside the integers mauto handles (64 bits: "
                     f"{SMALLEST_INTEGER} to {LARGEST_INTEGER})")


_TRUE_TEXTS, _BOOLEAN_TEXTS = ("true", "1", "yes"), ("true", "false", "1", "0", "yes", "no")


def _coerce_boolean(value: Any, zone: str, notices: list[str] | None) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOLEAN_TEXTS:
        return value.strip().lower() in _TRUE_TEXTS
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    from mauto.addresses import shown

    raise ValueError(f"must be true or false, not `{shown(value)}`")


def _coerce_date(value: Any, zone: str, notices: list[str] | None) -> date:
    from mauto.addresses import shown

    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    else:
        try:
            day = date.fromisoformat(value.strip() if isinstance(value, str) else shown(value))
        except ValueError:
            raise ValueError(f"`{shown(value)}` is not a date (YYYY-MM-DD)") from None
    if not EARLIEST.year <= day.year < LATEST.year:
        raise LimitError(f"`{shown(value)}` is outside the dates mauto handles ({RANGE_TEXT})")
    return day


def _coerce_datetime(value: Any, zone: str, notices: list[str] | None) -> datetime:
    try:
        return parse_time(value, None, zone, notices)
    except LimitError:
        raise
    except ValueError:
        from mauto.addresses import shown

        raise ValueError(f"`{shown(value)}` is not a date-time (2026-03-02T10:00:00+01:00)") from None


def _coerce_list(value: Any, zone: str, notices: list[str] | None) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [item.strip() for item in value.split(LIST_SEPARATOR) if item.strip()]
    from mauto.addresses import shown

    raise ValueError(f"must be a list, not `{shown(value)}`")


# One coercion per declared type: (value, zone, notices) -> the typed value, or ValueError saying why not. The
# value is never None and its texts are already checked (coerce does both first).
_COERCERS: dict[str, Callable[[Any, str, list[str] | None], Any]] = {
    "string": _coerce_string,
    "integer": _coerce_integer,
    "number": _coerce_number,
    "boolean": _coerce_boolean,
    "date": _coerce_date,
    "datetime": _coerce_datetime,
    "list": _coerce_list,
}
