"""Coupon pools: codes loaded once, each handed out once, ever."""
from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mauto.datafiles import MAX_CSV_LINE, DataError, csv_rows, open_bytes, text_lines
from mauto.errors import UsageError, printable
from mauto.store.sqlite import Store, stamp

MAX_CODE_LENGTH = 200  # characters in one code: a longer one is a mistake (a whole line, a missing separator)
# Controls, line breaks and the invisible format characters (zero-width spaces and joiners, bidi marks, the
# byte order mark, the soft hyphen): a code a person reads out or types must be what it looks like.
_CODE_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                           "\u2066-\u206f\ufeff]")
MAX_POOL_LENGTH = 100


@dataclass
class LoadResult:
    pool: str
    read: int = 0
    added: int = 0  # new codes; the others were already in the pool (and keep their assignment)
    repeated: int = 0  # codes read again further down the same file: loaded once

    def to_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "read": self.read, "added": self.added,
                "already_loaded": self.read - self.added - self.repeated, "repeated": self.repeated}


def read_codes(path: Path) -> list[str]:
    """Codes from a file: one a line, or a CSV with a `code` column (see `iter_codes`)."""
    return [code for _, code in iter_codes(path)]


def iter_codes(path: Path) -> Iterator[tuple[int, str]]:
    """(line, code) for each code of a file: one a line (a first line `code` is a header), or a CSV with a
    `code` column (a `.csv` file, or one whose first line has a comma). Blank lines and empty cells are
    skipped; surrounding spaces trimmed. The file must be UTF-8; a code holding a control character or a line
    break, or longer than MAX_CODE_LENGTH characters, is a DataError at its line."""
    shown = str(path)
    with open_bytes(path) as binary:
        lines = text_lines(binary, shown, MAX_CSV_LINE)
        read: list[str] = []  # the lines up to the first one that is not blank, given back to the reader
        for text in lines:
            read.append(text)
            if text.strip():
                break
        header = read[-1] if read else ""
        every = itertools.chain(read, lines)
        if not header.strip():
            return
        if path.suffix.lower() == ".csv" or "," in header:
            if "code" not in next(csv.reader([header]), []):
                raise DataError("a CSV of codes needs a `code` column", shown, len(read), 1)
            for line, row in csv_rows(every, shown):
                if isinstance(row, DataError):
                    raise row
                code = (row.get("code") or "").strip()
                if code:
                    yield line, _checked(code, shown, line)
            return
        for line, text in enumerate(every, start=1):
            code = text.strip()
            if not code or (code == "code" and line == len(read)):
                continue
            yield line, _checked(code, shown, line)


def _checked(code: str, shown: str, line: int) -> str:
    """`code` itself when it is one line of printable text of at most MAX_CODE_LENGTH characters."""
    from mauto.addresses import shown as quoted

    found = _CODE_REFUSED.search(code)
    if found is not None:
        character = found.group()
        kind = ("a NUL character" if character == "\x00" else
                "a line break" if character in "\n\r\u2028\u2029" else
                "a control character" if character <= "\x9f" else "an invisible character")
        written = quoted(code).replace("\t", "\\t")  # the one control character `quoted` leaves as it is
        raise DataError(f"the code `{written}` contains {kind} (U+{ord(character):04X}); "
                        "a code is one line of printable text", shown, line)
    if len(code) > MAX_CODE_LENGTH:
        raise DataError(f"a code of {len(code):,} characters (`{code[:20]}…`); a code has at most {MAX_CODE_LENGTH} "
                        "characters: is a separator missing?", shown, line)
    return code


def load_coupons(store: Store, pool: str, path: Path, batch_size: int = 2000) -> LoadResult:
    """Add the codes of `path` to `pool`. A code already in the pool is left as it is: reloading
    a file never frees a code that was handed out. A code given twice in the file is loaded once (counted
    in `repeated`). All or nothing: a bad line (see `iter_codes`) or a file without codes writes nothing."""
    if not pool.strip() or pool != pool.strip() or len(pool) > MAX_POOL_LENGTH or _CODE_REFUSED.search(pool):
        raise UsageError(f"POOL `{printable(pool)}`: a pool's name is one line of printable text, without spaces "
                         f"around it, of 1 to {MAX_POOL_LENGTH} characters (as workflows name it: "
                         "`assign_coupon: {pool: NAME}`)")
    result = LoadResult(pool)
    seen: set[str] = set()
    with store.transaction() as db:
        before = db.conn.total_changes
        now = store.stamp()
        batch: list[tuple[str, str, str]] = []
        for _, code in iter_codes(path):
            result.read += 1
            if code in seen:
                result.repeated += 1
                continue
            seen.add(code)
            batch.append((pool, code, now))
            if len(batch) >= batch_size:
                db.conn.executemany(INSERT_CODE, batch)
                batch.clear()
        if batch:
            db.conn.executemany(INSERT_CODE, batch)
        if not result.read:
            raise DataError("no codes in this file: one code a line, or a CSV with a `code` column", str(path))
        result.added = db.conn.total_changes - before
    return result


INSERT_CODE = "INSERT OR IGNORE INTO coupons (pool, code, loaded_at) VALUES (?, ?, ?)"


def take_coupon(store: Store, pool: str, contact: str, at: datetime) -> str | None:
    """Hand the next free code of `pool` to `contact`, atomically; None when the pool is empty."""
    with store.transaction() as db:
        return take_coupon_in(db, pool, contact, at)


def take_coupon_in(db: Any, pool: str, contact: str, at: datetime) -> str | None:
    """The same inside the caller's write transaction (the daemon's batch). One UPDATE … RETURNING:
    two takers never get the same code."""
    row = db.execute(
        "UPDATE coupons SET assigned_to = ?, assigned_at = ? WHERE rowid = ("
        " SELECT rowid FROM coupons WHERE pool = ? AND assigned_to IS NULL ORDER BY rowid LIMIT 1) RETURNING code",
        [contact, stamp(at), pool]).fetchall()
    return row[0][0] if row else None


def pool_counts(store: Store) -> dict[str, dict[str, int]]:
    with store.guard():
        return {pool: {"total": total, "free": free} for pool, total, free in store.db.execute(
            "SELECT pool, count(*), sum(assigned_to IS NULL) FROM coupons GROUP BY pool ORDER BY pool")}
