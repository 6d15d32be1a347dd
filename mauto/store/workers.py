"""The daemons at work on a store (schema version 9): a heartbeat per worker, for `mauto status`.

A worker is one `mauto daemon` process (or one `mauto run --once`): `host:pid:started`. It writes its row when
it starts, before and after each tick, and when it stops. Times are the wall clock's: liveness is about now,
whatever `--now` a tick runs at. A worker is alive while its last heartbeat is younger than twice its interval
plus a minute (a tick may run long; the row is written again when it ends)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from mauto.store.sqlite import stamp

GRACE = timedelta(minutes=1)
KEPT = timedelta(days=1)  # stopped or silent workers are listed this long, then forgotten


def beat(db: Any, worker: str, host: str, pid: int, started_at: datetime, now: datetime, interval: timedelta,
         state: str, ticked: bool = False) -> None:
    """Write the worker's heartbeat (its row made on the first), inside the caller's transaction."""
    db.execute(
        "INSERT INTO workers (id, host, pid, started_at, seen_at, interval_seconds, state, ticks, last_tick_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, "
        "state = excluded.state, ticks = workers.ticks + excluded.ticks, "
        "last_tick_at = coalesce(excluded.last_tick_at, workers.last_tick_at)",
        [worker, host, pid, stamp(started_at), stamp(now), interval.total_seconds(), state, 1 if ticked else 0,
         stamp(now) if ticked else None])


def listed(db: Any, now: datetime) -> list[dict[str, Any]]:
    """The workers seen within a day, newest first, each with `alive` (see the module's docstring); rows older
    than that are deleted here (inside the caller's transaction)."""
    db.execute("DELETE FROM workers WHERE seen_at < ?", [stamp(now - KEPT)])
    rows = list(db.query("SELECT id, host, pid, started_at, seen_at, interval_seconds, state, ticks, last_tick_at "
                         "FROM workers ORDER BY seen_at DESC, id"))
    for row in rows:
        seen = datetime.fromisoformat(row["seen_at"])
        deadline = seen + 2 * timedelta(seconds=float(row["interval_seconds"])) + GRACE
        row["alive"] = row["state"] != "stopped" and now <= deadline
    return rows
