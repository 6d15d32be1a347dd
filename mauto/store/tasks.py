"""The tasks table: what `mauto tasks` lists and marks done, and the hand-off queue the daemon works through.

A `task` step's task is a row made in the batch that ran the step (`runtime.insert_tasks`); with
`tasks.handoff` in mauto.yaml the row is made with `handoff = 'pending'`, and `mauto.daemon.tasks` hands it
over after that batch is committed: `handoff` becomes `done`, or `failed` with the reason in `handoff_answer`,
or stays `pending` until `handoff_next_try_at` after a temporary failure. Times are the store's (`stamp`: UTC,
fixed width, so that text order is time order), but for `due_at`, which the engine writes with the offset of
the moment the step ran at: it is compared and ordered through `julianday`, which reads the offset.
"""
from __future__ import annotations

from typing import Any

COLUMNS = ("id, key, contact, workflow, step, title, assignee, notes, due_at, created_at, done_at, done_by, handoff, "
           "handoff_attempts, handoff_next_try_at, handoff_answer")
HANDOFF_STATES = ("pending", "done", "failed")


def _casefold(db: Any) -> None:
    """SQLite's NOCASE and lower() know A to Z only: the connection gets Python's casefold, for every alphabet."""
    db.conn.create_function("mauto_casefold", 1, lambda text: text.casefold() if isinstance(text, str) else text,
                            deterministic=True)


def _where(open_only: bool, owner: str | None, workflow: str | None, handoff: str | None) -> tuple[str, list[Any]]:
    clauses, args = [], []
    if open_only:
        clauses.append("done_at IS NULL")
    if owner is not None:  # compared as people write it: Ana@Shop.example is ana@shop.example, Élodie is élodie
        clauses.append("mauto_casefold(assignee) = mauto_casefold(?)")  # PostgreSQL: lower() in ICU's collation
        args.append(owner)
    if workflow is not None:
        clauses.append("workflow = ?")
        args.append(workflow)
    if handoff is not None:
        clauses.append("handoff = ?")
        args.append(handoff)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def tasks(db: Any, *, open_only: bool = False, owner: str | None = None, workflow: str | None = None,
          handoff: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The tasks asked for: open ones by due date (soonest first; those with no due date after, oldest first),
    all of them newest first."""
    _casefold(db)
    where, args = _where(open_only, owner, workflow, handoff)
    order = ("julianday(due_at) IS NULL, julianday(due_at), created_at, id" if open_only
             else "created_at DESC, id DESC")
    return list(db.query(f"SELECT {COLUMNS} FROM tasks{where} ORDER BY {order} LIMIT ?", [*args, limit]))


def count(db: Any, *, open_only: bool = False, owner: str | None = None, workflow: str | None = None,
          handoff: str | None = None) -> int:
    """How many tasks `tasks` would list without its limit."""
    _casefold(db)
    where, args = _where(open_only, owner, workflow, handoff)
    return int(db.execute(f"SELECT count(*) FROM tasks{where}", args).fetchone()[0])


def task(db: Any, task_id: int) -> dict[str, Any] | None:
    return next(db.query(f"SELECT {COLUMNS} FROM tasks WHERE id = ?", [task_id]), None)


def mark_done(db: Any, task_id: int, at: str, by: str | None) -> bool:
    """Mark an open task done; False when it is done already (or there is no such task): nothing changes."""
    return db.execute("UPDATE tasks SET done_at = ?, done_by = ? WHERE id = ? AND done_at IS NULL",
                      [at, by, task_id]).rowcount == 1


def reopen(db: Any, task_id: int) -> bool:
    """Make a done task open again; False when it is open already (or there is no such task)."""
    return db.execute("UPDATE tasks SET done_at = NULL, done_by = NULL WHERE id = ? AND done_at IS NOT NULL",
                      [task_id]).rowcount == 1


def summary(db: Any, now: str) -> dict[str, int]:
    """Counts for `mauto status`: open tasks, those past their due date, and hand-offs pending and failed."""
    row = db.execute(
        "SELECT count(*) FILTER (WHERE done_at IS NULL), "
        "count(*) FILTER (WHERE done_at IS NULL AND julianday(due_at) < julianday(?)), "
        "count(*) FILTER (WHERE handoff = 'pending'), count(*) FILTER (WHERE handoff = 'failed') FROM tasks",
        [now]).fetchone()
    return {"open": row[0], "overdue": row[1], "handoff_pending": row[2], "handoff_failed": row[3]}


# --- the hand-off queue --------------------------------------------------------------------------------------


def due_handoffs(db: Any, until: str, after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
    """Tasks to hand over now (`handoff` pending, never tried or due again by `until`), by id, after `after`."""
    return list(db.query(
        f"SELECT {COLUMNS} FROM tasks WHERE handoff = 'pending' AND (handoff_next_try_at IS NULL OR "
        "handoff_next_try_at <= ?) AND id > ? ORDER BY id LIMIT ?", [until, after, limit]))


def record_handoff(db: Any, task_id: int, state: str, answer: str | None, next_try_at: str | None = None) -> None:
    """One hand-off attempt's outcome: `state` pending (again at `next_try_at`), done or failed."""
    if state not in HANDOFF_STATES:
        raise ValueError(f"a hand-off is pending, done or failed, not {state!r}")
    db.execute("UPDATE tasks SET handoff = ?, handoff_answer = ?, handoff_next_try_at = ?, "
               "handoff_attempts = handoff_attempts + 1 WHERE id = ?", [state, answer, next_try_at, task_id])
