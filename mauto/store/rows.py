"""Rows in (streamed, with line numbers, bad lines kept as problems) and rejected rows out."""
from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mauto.datafiles import DataError, data_format, iter_rows
from mauto.errors import UsageError

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
    """(line, row) for each row, or (line, DataError) for a bad row, so that reading goes on after it
    (datafiles.iter_rows). CSV and JSON Lines stream; YAML is parsed whole, its plain scalars kept as written
    for the declared field types to decide (`phone: +33612345678` is that text, not a number)."""
    return iter_rows(source, fmt, shown_name(source), as_written=True)


def check_rejects_path(source: str | Path, rejects: Path | None, store: Path | None = None) -> None:
    """Refuse a --rejects file that is the input itself or the store (by name, link or another path to
    it): writing the rejects there would destroy it. Called before anything is opened."""
    if rejects is None:
        return
    if str(rejects) == "-":
        raise UsageError("--rejects -: name a file (standard output carries the command's report)")
    protected = {} if str(source) == "-" else {str(source): "the input file"}
    if store is not None:
        protected.update(store_files(store))
    refuse_overwrite(rejects, "--rejects", protected, "the bad rows")


def store_files(store: Path) -> dict[str, str]:
    """The files of a SQLite store in WAL mode, each with what it is: never to be written over."""
    if str(store) == ":memory:":
        return {}
    return {str(store): "the store", f"{store}-wal": "the store's write-ahead log",
            f"{store}-shm": "the store's shared memory", f"{store}.lock": "the store's tick lock"}


def refuse_overwrite(target: Path, option: str, protected: dict[str, str], what: str) -> None:
    """UsageError when `target` is one of the `protected` files (path -> what it is), by name, link or
    another path to it."""
    for path, role in protected.items():
        same = os.path.abspath(path) == os.path.abspath(target) or \
            os.path.realpath(path) == os.path.realpath(target)
        if not same and os.path.exists(path) and os.path.exists(target):
            try:
                same = os.path.samefile(path, target)
            except OSError:
                same = False
        if same:
            raise UsageError(f"{option} {target}: that is {role}; writing {what} there would destroy it: "
                             "name another file")


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
    # What was read in a way worth saying, the row being good (a local time that does not exist, and the
    # moment taken for it): the first `problems.limit` kept, all counted.
    notices: list[DataError] = field(default_factory=list)
    notice_count: int = 0

    def notice(self, line: int, message: str) -> None:
        self.notice_count += 1
        if len(self.notices) < self.problems.limit:
            self.notices.append(DataError(message, self.source, line))

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

    The file appears whole or not at all: rows go to a temporary file beside it, renamed into place by
    `close`; when `close` runs while an exception propagates (the file could not be read as a whole, the store
    failed), the temporary file is removed and nothing is left. CSV rows are spooled as JSON Lines first (their
    columns are known only at the end), so memory stays flat however many rows are rejected."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = Path(path)
        self.fmt = fmt
        self.count = 0
        self._columns: dict[str, None] = {}
        self._handling = sys.exc_info()[1]  # an exception already being handled by the caller is not ours
        try:
            # Both live as long as this object; `close` closes them.
            self._part = tempfile.NamedTemporaryFile("w", dir=self.path.parent, prefix=f".{self.path.name}.",  # noqa: SIM115
                                                     suffix=".part", delete=False, encoding="utf-8", newline="")
            self._out = tempfile.TemporaryFile("w+", encoding="utf-8") if fmt == "csv" else self._part  # noqa: SIM115
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
        failed = sys.exc_info()[1] not in (None, self._handling)
        try:
            if self.fmt == "csv" and not failed:
                self._write_csv()
            self._part.close()
            if not failed:
                os.replace(self._part.name, self.path)
        except OSError as error:
            raise DataError(f"cannot write: {error.strerror}", str(self.path)) from None
        finally:
            self._out.close()
            self._part.close()
            if os.path.exists(self._part.name):
                os.unlink(self._part.name)

    def _write_csv(self) -> None:
        self._out.seek(0)
        columns = [key for key in self._columns if key not in ("_line", "_error")] + ["_line", "_error"]
        writer = csv.DictWriter(self._part, columns)
        writer.writeheader()
        for text in self._out:
            writer.writerow({key: _cell(value) for key, value in json.loads(text).items()})


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return value
