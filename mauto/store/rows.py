"""Rows in (streamed, with line numbers, bad lines kept as problems) and rejected rows out."""
from __future__ import annotations

import csv
import io
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from mauto.datafiles import DataError, data_format, read_rows

BATCH_SIZE = 2000  # rows read, checked and written together
MAX_PROBLEMS = 100  # problems kept (and shown); the rest are counted


def shown_name(source: str | Path) -> str:
    return "<stdin>" if str(source) == "-" else str(source)


def source_format(source: str | Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    if str(source) == "-":
        raise DataError("reading standard input: say its format with --format csv|jsonl|yaml")
    return data_format(source)


def rows(source: str | Path, fmt: str) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """(line, row) for each row, or (line, DataError) for a JSON line that is not an object, so that reading
    goes on after it. CSV and JSON Lines stream; YAML is parsed whole."""
    shown = shown_name(source)
    if fmt == "csv":
        yield from _csv_rows(source, shown)
        return
    if fmt != "jsonl":
        yield from read_rows(source, fmt)
        return
    if str(source) == "-":
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig")
    else:
        try:
            stream = open(source, encoding="utf-8-sig")
        except OSError as error:
            raise DataError(f"cannot read: {error.strerror}", shown) from None
    with stream:
        for number, text in enumerate(stream, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                yield number, DataError(f"invalid JSON: {error.msg}", shown, number, error.colno)
                continue
            if not isinstance(row, dict):
                yield number, DataError("each line must be a JSON object", shown, number, 1)
                continue
            yield number, row


def _csv_rows(source: str | Path, shown: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) for each CSV row, as datafiles.read_rows gives them (empty cells left out, the cells a short
    row lacks as None, cells past the header dropped, blank lines skipped), from csv.reader and the header
    rather than csv.DictReader, which costs a Python-level call per row. The line is the row's last (a
    quoted cell may span lines)."""
    if str(source) == "-":
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig")
    else:
        try:
            stream = open(source, encoding="utf-8-sig", newline="")  # Excel writes CSV with a byte order mark
        except OSError as error:
            raise DataError(f"cannot read: {error.strerror}", shown) from None
    with stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None:
            return
        width = len(header)
        unique = len(set(header)) == width  # else a later column of the same name wins, as in a dict
        for cells in reader:
            if not cells:
                continue
            if unique:
                row = {name: value for name, value in zip(header, cells) if value != ""}
            else:
                row = {name: value for name, value in dict(zip(header, cells)).items() if value != ""}
            if len(cells) < width:
                for name in header[len(cells):]:
                    row[name] = None
            yield reader.line_num, row


def batches(source: str | Path, fmt: str, size: int = BATCH_SIZE) -> Iterator[list[tuple[int, Any]]]:
    batch: list[tuple[int, Any]] = []
    for item in rows(source, fmt):
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Problems:
    """The bad rows of one file: the first MAX_PROBLEMS kept, all counted."""

    limit: int = MAX_PROBLEMS
    kept: list[DataError] = field(default_factory=list)
    count: int = 0

    def add(self, problem: DataError) -> None:
        self.count += 1
        if len(self.kept) < self.limit:
            self.kept.append(problem)


@dataclass
class FileResult:
    """What reading one data file into the store gave: its bad rows, where they were set aside, and whether
    the transaction was committed. `contacts import` and `events ingest` add their counts."""

    source: str
    problems: Problems = field(default_factory=Problems)
    committed: bool = False
    rejects: str | None = None

    @property
    def ok(self) -> bool:
        return self.problems.count == 0

    def problem_dicts(self) -> list[dict[str, Any]]:
        return [{"path": p.path, "line": p.line, "message": p.message} for p in self.problems.kept]


class BatchProblems:
    """A batch's bad rows, found in several passes (row checks, duplicates, lookups), recorded in line order:
    counted in `problems` and written aside to `rejects` when asked."""

    def __init__(self, problems: Problems, shown: str, rejects: Rejects | None) -> None:
        self.problems = problems
        self.shown = shown
        self.rejects = rejects
        self._pending: list[tuple[int, dict[str, Any] | None, str]] = []

    def reject(self, line: int, row: dict[str, Any] | None, message: str) -> None:
        self._pending.append((line, row, message))

    def flush(self) -> None:
        for line, row, message in sorted(self._pending, key=lambda item: item[0]):
            self.problems.add(DataError(message, self.shown, line))
            if self.rejects is not None:
                self.rejects.write(line, row, message)
        self._pending.clear()


class Rejects:
    """Bad rows written aside in the input's format, each with `_line` and `_error`.

    CSV rows are spooled as JSON Lines first (their columns are known only at the end), so
    memory stays flat however many rows are rejected."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.count = 0
        self._columns: dict[str, None] = {}
        try:
            self._out = tempfile.TemporaryFile("w+", encoding="utf-8") if fmt == "csv" else \
                open(path, "w", encoding="utf-8", newline="")
        except OSError as error:
            raise DataError(f"cannot write: {error.strerror}", str(path)) from None

    def write(self, line: int, row: dict[str, Any] | None, reason: str) -> None:
        record = {**(row or {}), "_line": line, "_error": reason}
        self.count += 1
        if self.fmt == "yaml":
            self._out.write(yaml.safe_dump([_plain(record)], allow_unicode=True, sort_keys=False,
                                           default_flow_style=None, width=1_000_000))
            return
        for key in record:
            self._columns.setdefault(key, None)
        self._out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    def close(self) -> None:
        if self.fmt != "csv":
            self._out.close()
            return
        self._out.seek(0)
        columns = [key for key in self._columns if key not in ("_line", "_error")] + ["_line", "_error"]
        try:
            with open(self.path, "w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, columns)
                writer.writeheader()
                for text in self._out:
                    writer.writerow({key: _cell(value) for key, value in json.loads(text).items()})
        except OSError as error:
            raise DataError(f"cannot write: {error.strerror}", str(self.path)) from None
        finally:
            self._out.close()


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value
