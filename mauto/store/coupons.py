"""Coupon pools: codes loaded once, each handed out once, ever; until when each is good, and when it was used."""
from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mauto.datafiles import MAX_CSV_LINE, DataError, csv_rows, open_bytes, text_lines
from mauto.errors import UsageError, printable
from mauto.store.sqlite import Store, row_lock, stamp

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


def take_coupon(store: Store, pool: str, contact: str, at: datetime, expires_at: datetime | None = None) -> str | None:
    """Hand the next free code of `pool` to `contact`, atomically; None when the pool is empty. `expires_at`:
    until when the code is good (`assign_coupon: {valid_for}`), None: for ever."""
    with store.transaction() as db:
        return take_coupon_in(db, pool, contact, at, expires_at)


def take_coupon_in(db: Any, pool: str, contact: str, at: datetime, expires_at: datetime | None = None) -> str | None:
    """The same inside the caller's write transaction (the daemon's batch). One UPDATE … RETURNING:
    two takers never get the same code."""
    # On PostgreSQL several daemons take codes at once: each skips the row another is taking (SKIP LOCKED), and
    # `assigned_to IS NULL` is checked again on the row it updates.
    skip = row_lock(db, "FOR UPDATE SKIP LOCKED")
    row = db.execute(
        "UPDATE coupons SET assigned_to = ?, assigned_at = ?, expires_at = ? WHERE rowid = ("
        f" SELECT rowid FROM coupons WHERE pool = ? AND assigned_to IS NULL ORDER BY rowid LIMIT 1{skip})"
        " AND assigned_to IS NULL RETURNING code",
        [contact, stamp(at), stamp(expires_at) if expires_at is not None else None, pool]).fetchall()
    return row[0][0] if row else None


def pool_counts(store: Store) -> dict[str, dict[str, int]]:
    with store.guard():
        return {pool: {"total": total, "free": free} for pool, total, free in store.db.execute(
            "SELECT pool, count(*), count(*) FILTER (WHERE assigned_to IS NULL) FROM coupons GROUP BY pool "
            "ORDER BY pool")}


# --- redemption: a configured event that names an assigned code ------------------------------------------

_PROPERTY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _watermark_key(pool: str) -> str:
    # One per pool: a pool given `redeemed_by` later reads the events stored before, once.
    return f"coupons.redeemed_through:{pool}"


def redeem_coupons_in(db: Any, pools: Mapping[str, Any]) -> int:
    """Mark redeemed the assigned codes that an event configured to redeem them names, inside the caller's write
    transaction (the daemon's tick; `mauto coupons` before it counts); returns how many it marked.

    `pools`: pool name -> settings with `event` and `property` (mauto.config.CouponPool); a pool without
    `event` is skipped. Each pool reads the events stored since it last read (by `seq`), so every event is read
    once per pool however often this runs: an event of that name whose property equals one of the pool's
    assigned, unredeemed codes, and that happened at or after the code was handed out, redeems it with its
    `seq` and its time. The first such event wins; an event naming a code not handed out redeems nothing. An
    expired code is still marked: the event says the shop took it."""
    from mauto.store.runtime import get_state, set_state

    marked = 0
    top = db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    for pool, settings in pools.items():
        event, prop = getattr(settings, "event", None), getattr(settings, "property", None)
        if not event or not prop:
            continue
        key = _watermark_key(pool)
        through = int(get_state(db, key) or 0)
        if top <= through:
            continue
        # json_valid first: a row whose properties are not JSON (written by hand) must not stop the others. The
        # path unquoted: mauto.yaml's property is a name of letters, digits and `_` (config.py checks it), and
        # PostgreSQL's translation of a path splits it at the dots, quotes and all.
        path = f"$.{prop}" if _PROPERTY.fullmatch(prop) else f'$."{prop}"'
        rows = db.execute(
            "SELECT seq, at, CASE WHEN json_valid(properties) THEN json_extract(properties, ?) END FROM events "
            "WHERE name = ? AND seq > ? AND seq <= ? ORDER BY seq", [path, event, through, top]).fetchall()
        for seq, at, written in rows:
            code = str(written).strip() if isinstance(written, (str, int)) and not isinstance(written, bool) else ""
            if not code:
                continue
            marked += db.execute(
                "UPDATE coupons SET redeemed_at = ?, redeemed_by = ? WHERE pool = ? AND code = ? AND "
                "assigned_to IS NOT NULL AND redeemed_at IS NULL AND assigned_at <= ?",
                [at, seq, pool, code, at]).rowcount
        set_state(db, key, str(top))
    return marked


def redeem_coupons(store: Store, pools: Mapping[str, Any]) -> int:
    """`redeem_coupons_in` in a write transaction of its own."""
    with store.transaction() as db:
        return redeem_coupons_in(db, pools)


# --- the pools at a glance: `mauto coupons` --------------------------------------------------------------

PACE_WINDOW = timedelta(days=7)  # how far back the pace a pool is used at is measured


@dataclass
class PoolReport:
    """One pool at `now`. Every code is in exactly one of `left` (never handed out), `open` (handed out, not
    redeemed, not expired), `redeemed` and `expired` (handed out, not redeemed, past its expiry); `assigned`
    is every code handed out (open + redeemed + expired). `low_at`: fewer codes left than this is running low
    (a pool with none left is always low). `days_left`: how long the codes left last at the pace of the last
    7 days (None when none was handed out in them)."""

    pool: str
    total: int = 0
    assigned: int = 0
    redeemed: int = 0
    expired: int = 0
    left: int = 0
    low_at: int = 0
    taken_lately: int = 0  # handed out in the last PACE_WINDOW

    @property
    def open(self) -> int:
        return self.assigned - self.redeemed - self.expired

    @property
    def low(self) -> bool:
        return self.left == 0 or self.left < self.low_at

    @property
    def days_left(self) -> int | None:
        if not self.taken_lately:
            return None
        return int(self.left / (self.taken_lately / PACE_WINDOW.days))

    def warning(self) -> str | None:
        """What to say when the pool runs low, or None."""
        if not self.low:
            return None
        if self.total == 0:
            return f"pool {self.pool} has no codes: load some with `mauto coupons load {self.pool} FILE`"
        pace = (f"; at the pace of the last 7 days they last about {self.days_left} day"
                f"{'s' if self.days_left != 1 else ''}" if self.days_left is not None and self.left else "")
        left = "no codes left" if not self.left else f"{self.left:,} code{'s' if self.left != 1 else ''} left"
        return (f"pool {self.pool} runs low: {left} of {self.total:,} (low below {self.low_at:,}){pace}; load "
                f"more with `mauto coupons load {self.pool} FILE`")

    def to_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "total": self.total, "assigned": self.assigned, "open": self.open,
                "redeemed": self.redeemed, "expired": self.expired, "left": self.left, "low": self.low,
                "low_below": self.low_at, "days_left": self.days_left}


def coupon_report(store: Store, pools: Mapping[str, Any], now: datetime,
                  low_at: Callable[[str, int], int]) -> list[PoolReport]:
    """Every pool of the store and every pool `pools` configures (mauto.yaml's `coupons:`), in name order, at
    `now`: redemptions brought up to date first (`redeem_coupons`), then counted. `low_at(pool, total)`: the
    threshold below which the pool runs low (mauto.config.CouponPool.low_at)."""
    redeem_coupons(store, pools)
    at, lately = stamp(now), stamp(now - PACE_WINDOW)
    reports = {pool: PoolReport(pool) for pool in pools}
    with store.guard():
        for pool, total, assigned, redeemed, expired, recent in store.db.execute(
                "SELECT pool, count(*), count(assigned_to), count(redeemed_at), "
                "count(*) FILTER (WHERE assigned_to IS NOT NULL AND redeemed_at IS NULL AND expires_at IS NOT NULL "
                "AND expires_at <= ?), count(*) FILTER (WHERE assigned_at > ? AND assigned_at <= ?) FROM coupons "
                "GROUP BY pool", [at, lately, at]):
            reports[pool] = PoolReport(pool, total, assigned, redeemed, expired or 0, total - assigned,
                                       taken_lately=recent or 0)
    for report in reports.values():
        report.low_at = low_at(report.pool, report.total)
    return [reports[pool] for pool in sorted(reports)]
