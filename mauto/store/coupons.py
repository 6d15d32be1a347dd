"""Coupon pools: codes loaded once, each handed out once, ever."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mauto.datafiles import DataError
from mauto.store.sqlite import Store, stamp


@dataclass
class LoadResult:
    pool: str
    read: int = 0
    added: int = 0  # new codes; the others were already in the pool (and keep their assignment)

    def to_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "read": self.read, "added": self.added, "already_loaded": self.read - self.added}


def read_codes(path: Path) -> list[str]:
    """Codes from a file: one a line, or a CSV with a `code` column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise DataError(f"cannot read: {error.strerror}", str(path)) from None
    lines = text.splitlines()
    header = next((line for line in lines if line.strip()), "")
    if path.suffix.lower() == ".csv" or "," in header:
        reader = csv.DictReader(io.StringIO(text))
        if "code" not in (reader.fieldnames or []):
            raise DataError("a CSV of codes needs a `code` column", str(path), 1, 1)
        codes = []
        for row in reader:
            code = (row.get("code") or "").strip()
            if code:
                codes.append(code)
        return codes
    codes = [line.strip() for line in lines if line.strip()]
    return codes[1:] if codes[:1] == ["code"] else codes


def load_coupons(store: Store, pool: str, path: Path) -> LoadResult:
    """Add the codes of `path` to `pool`. A code already in the pool is left as it is: reloading
    a file never frees a code that was handed out."""
    codes = read_codes(path)
    result = LoadResult(pool, read=len(codes))
    with store.transaction() as db:
        before = db.conn.total_changes
        now = store.stamp()
        db["coupons"].insert_all(({"pool": pool, "code": code, "loaded_at": now} for code in codes),
                                 batch_size=2000, ignore=True)
        result.added = db.conn.total_changes - before
    return result


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
