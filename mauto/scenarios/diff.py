"""A contact's timeline as a diff: `-` the line an expectation wanted, `+` what happened instead, the rest as
context, times in the contact's own zone (as `mauto simulate` shows them)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from mauto.engine.state import LogEntry
from mauto.report import _local_times, _what

TIME_FORMAT = "%a %d %b %H:%M %Z"  # as `mauto simulate` shows times


def stamp(moment: datetime, tz: tzinfo) -> str:
    """A moment as the timeline shows it, in `tz`: "Tue 24 Nov 10:00 CET"."""
    return moment.astimezone(tz).strftime(TIME_FORMAT)


@dataclass
class Expected:
    """The line a positive expectation wants in the timeline, for the diff."""

    at: datetime | None
    workflow: str
    step: str
    what: str
    detail: str = ""


def diff_lines(context: list[LogEntry], marked: list[LogEntry], expected: Expected | None, tz: tzinfo,
               contact: str, workflows: list[str]) -> list[str]:
    """The timeline as a diff: `-` the expected line at its time, `+` the lines that happened instead,
    the other lines of the same workflows for context. Times in the contact's zone."""
    marked_ids = {id(entry) for entry in marked}
    context_ids = {id(entry) for entry in context}
    entries = list(context) + [entry for entry in marked if id(entry) not in context_ids]
    order = {id(entry): index for index, entry in enumerate(entries)}
    entries.sort(key=lambda entry: (entry.at, order[id(entry)]))
    rows: list[tuple[str, str, str, str, str, str]] = []  # prefix, time, workflow, step, what, detail
    for entry in entries:
        prefix = "+" if id(entry) in marked_ids else " "
        rows.append((prefix, stamp(entry.at, tz), entry.workflow, entry.step, _what(entry),
                     _local_times(entry.detail, tz) if entry.detail else ""))
    if expected is not None:
        row = ("-", stamp(expected.at, tz) if expected.at is not None else "any time", expected.workflow,
               expected.step, expected.what, expected.detail)
        # Where a diff puts it: at its time, before any `+` line of the same moment; without a time,
        # just before the first `+` line, else at the end.
        if expected.at is not None:
            position = next((index for index, entry in enumerate(entries) if entry.at > expected.at or (
                entry.at == expected.at and id(entry) in marked_ids)), len(rows))
        else:
            position = next((index for index, entry in enumerate(entries) if id(entry) in marked_ids), len(rows))
        rows.insert(position, row)
    widths = _widths(rows)
    lines = [_row_text(row, widths) for row in rows]
    if not entries:
        where = f" in {', '.join(workflows)}" if workflows else ""
        lines.append(f"    (nothing happened to {contact}{where})")
    return lines


def _widths(rows: Sequence[tuple[str, ...]]) -> list[int]:
    return [max((len(row[index]) for row in rows), default=0) for index in range(len(rows[0]))] if rows else []


def _row_text(row: tuple[str, ...], widths: list[int]) -> str:
    prefix, *columns = row
    cells = [column.ljust(widths[index + 1]) for index, column in enumerate(columns[:-1]) if widths[index + 1]]
    return f"  {prefix} " + "  ".join(cells + [columns[-1]]).rstrip()
