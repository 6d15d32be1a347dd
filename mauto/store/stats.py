"""The SQL of `mauto stats` and `mauto report` (mauto/stats/): a workflow's figures summed over the indexes of
schema version 7, never a Python loop over rows. What the figures mean is docs/stats.md's."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mauto.store.sqlite import stamp

IN_FLIGHT = ("active", "waiting", "pending")
# Step-log kinds that do not mean "the enrollment reached this step": a trigger's skip, the entry and the end
# (logged at no step), a goal (where the enrollment already stands, or at `end` after it ended). A send put off
# has been reached: the enrollment waits there.
NOT_REACHING = ("skip", "enter", "complete", "goal")


@dataclass(frozen=True)
class Window:
    """What the figures cover: the moments (UTC) and the version, None for no bound."""

    since: datetime | None = None
    until: datetime | None = None
    version: int | None = None

    def clause(self, column: str, args: list[Any], version_column: str | None = "version") -> str:
        """The SQL terms (each starting with AND) that keep `column` in the window; their values go to `args`."""
        sql = ""
        if self.since is not None:
            sql += f" AND {column} >= ?"
            args.append(stamp(self.since))
        if self.until is not None:
            sql += f" AND {column} < ?"
            args.append(stamp(self.until))
        if self.version is not None and version_column:
            sql += f" AND {version_column} = ?"
            args.append(self.version)
        return sql


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def iso(text: str | None) -> str | None:
    """A moment from the store as ISO text in UTC (the store keeps every one so, or with its own offset)."""
    if not text:
        return None
    return datetime.fromisoformat(text).astimezone(UTC).isoformat()


def enrollments(db: Any, workflow_id: str, window: Window) -> dict[str, Any]:
    args: list[Any] = [workflow_id]
    where = window.clause("entered_at", args)
    counts = dict.fromkeys(("entered", "active", "completed", "exited", "failed", "converted"), 0)
    for state, count, converted in db.execute(
            f"SELECT state, count(*), count(converted_at) FROM enrollments WHERE workflow = ?{where} GROUP BY state",
            args):
        counts["entered"] += count
        counts["converted"] += converted
        if state in IN_FLIGHT:
            counts["active"] += count
        elif state in ("completed", "exited", "failed"):
            counts[state] += count
        # the state `converted` (the goal's exit) is counted in `converted`, with the goals reached otherwise
    counts["conversion_rate"] = rate(counts["converted"], counts["entered"])  # type: ignore[assignment]
    return counts


def actions(db: Any, workflow_id: str, window: Window) -> dict[str, Any]:
    args: list[Any] = [workflow_id]
    where = window.clause("at", args)
    # Two subqueries: SQLite finds a min() or a max() at the index's end only when it is alone in its query.
    first, last = db.execute(f"SELECT (SELECT min(at) FROM step_log WHERE workflow = ?{where}), "
                             f"(SELECT max(at) FROM step_log WHERE workflow = ?{where})", args + args).fetchone()
    return {"first_action_at": iso(first), "last_action_at": iso(last)}


def arrivals(db: Any, workflow_id: str, window: Window) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Per step: the enrollments that reached it, those that ended there, and the sends refused there. The first
    is one pass over the covering index `step_log_steps` (workflow, step, enrollment); the others read the small
    partial index `step_log_endings`."""
    args: list[Any] = [workflow_id, *NOT_REACHING]
    where = window.clause("at", args)
    marks = ",".join("?" * len(NOT_REACHING))
    reached = dict(db.execute(f"SELECT step, count(DISTINCT enrollment) FROM step_log WHERE workflow = ? AND "
                              f"kind NOT IN ({marks}){where} GROUP BY step", args).fetchall())
    args = [workflow_id]
    where = window.clause("at", args)
    left: dict[str, int] = {}
    suppressed: dict[str, int] = {}
    for step, kind, count in db.execute(
            f"SELECT step, kind, count(DISTINCT enrollment) FROM step_log WHERE workflow = ? AND "
            f"kind IN ('exit', 'failed', 'suppressed'){where} GROUP BY step, kind", args):
        if kind == "suppressed":
            suppressed[step] = count
        else:
            left[step] = left.get(step, 0) + count
    return reached, left, suppressed


def messages(db: Any, workflow_id: str, window: Window) -> dict[str, dict[str, Any]]:
    args: list[Any] = [workflow_id]
    where = window.clause("created_at", args)
    found: dict[str, dict[str, Any]] = defaultdict(dict)
    for step, status, count in db.execute(
            f"SELECT step, status, count(*) FROM messages WHERE workflow = ?{where} GROUP BY step, status", args):
        found[step][status] = count
    return dict(found)


def feedback_where(workflow_id: str, window: Window) -> tuple[str, list[Any]]:
    args: list[Any] = [workflow_id]
    where = "workflow = ?" + window.clause("at", args, version_column=None)
    if window.version is not None:
        where += " AND message IN (SELECT ref FROM messages WHERE workflow = ? AND version = ?)"
        args += [workflow_id, window.version]
    return where, args


def feedback(db: Any, workflow_id: str, window: Window) -> dict[str, dict[str, int]]:
    """Per step: the messages opened (by a person; by a privacy proxy only, apart), clicked, unsubscribed
    from, bounced and complained about, each message once however often (`message_feedback`, kept by a trigger
    on the events)."""
    where, args = feedback_where(workflow_id, window)
    found: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    names = {"email_clicked": "clicked", "unsubscribed": "unsubscribed", "email_bounced": "bounced",
             "email_complained": "complained"}
    for step, kind, count, human in db.execute(
            f"SELECT step, kind, count(*), count(*) FILTER (WHERE human = 1) FROM message_feedback WHERE {where} "
            "GROUP BY step, kind", args):
        if kind == "email_opened":
            found[step]["opened"] += human
            found[step]["opened_prefetched"] += count - human
        elif kind in names:
            found[step][names[kind]] += count
    return {step: dict(counts) for step, counts in found.items()}


def daily(db: Any, workflow_id: str, window: Window) -> list[dict[str, Any]]:
    days: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("entered", "sent", "opened", "clicked", "converted"), 0))
    args: list[Any] = [workflow_id]
    where = window.clause("entered_at", args)
    for day, count in db.execute(f"SELECT substr(entered_at, 1, 10), count(*) FROM enrollments "
                                 f"WHERE workflow = ?{where} GROUP BY 1", args):
        days[day]["entered"] += count
    args = [workflow_id]
    where = window.clause("converted_at", args)
    for day, count in db.execute(f"SELECT substr(converted_at, 1, 10), count(*) FROM enrollments "
                                 f"WHERE workflow = ? AND converted_at IS NOT NULL{where} GROUP BY 1", args):
        days[day]["converted"] += count
    args = [workflow_id]
    where = window.clause("sent_at", args)
    for day, count in db.execute(f"SELECT substr(sent_at, 1, 10), count(*) FROM messages "
                                 f"WHERE workflow = ? AND status = 'sent'{where} GROUP BY 1", args):
        days[day]["sent"] += count
    heard, args = feedback_where(workflow_id, window)
    for day, kind, count in db.execute(
            f"SELECT substr(at, 1, 10), kind, count(*) FROM message_feedback WHERE {heard} "
            f"AND kind IN ('email_opened', 'email_clicked') AND human = 1 GROUP BY 1, 2", args):
        days[day]["opened" if kind == "email_opened" else "clicked"] += count
    return [{"date": day, **days[day]} for day in sorted(days)]


def overview(db: Any, now: datetime, window: Window = Window()) -> dict[str, Any]:
    """One line per deployed workflow: its enrollments, conversions, sends, opens and clicks, last action."""
    lines: dict[str, dict[str, Any]] = {}
    for workflow_id, version, state in db.execute("SELECT id, current_version, state FROM workflows ORDER BY id"):
        lines[workflow_id] = {"workflow": workflow_id, "version": version, "state": state, "entered": 0, "active": 0,
                              "converted": 0, "conversion_rate": None, "sent": 0, "opened": 0, "clicked": 0,
                              "last_action_at": None}
    args: list[Any] = []
    where = window.clause("entered_at", args)
    for workflow_id, state, count, converted in db.execute(
            f"SELECT workflow, state, count(*), count(converted_at) FROM enrollments WHERE 1 = 1{where} "
            f"GROUP BY workflow, state", args):
        line = lines.get(workflow_id)
        if line is None:
            continue
        line["entered"] += count
        line["converted"] += converted
        if state in IN_FLIGHT:
            line["active"] += count
    # the workflows whose running version has a goal: the others have no conversion rate (not a zero one)
    goals = {name for (name,) in db.execute(
        "SELECT w.id FROM workflows w JOIN workflow_versions v ON v.id = w.id AND v.version = w.current_version "
        "WHERE json_valid(v.data) AND json_extract(v.data, '$.goal') IS NOT NULL")}
    args = []
    where = window.clause("created_at", args)
    for workflow_id, count in db.execute(
            f"SELECT workflow, count(*) FROM messages WHERE status = 'sent'{where} GROUP BY workflow", args):
        if workflow_id in lines:
            lines[workflow_id]["sent"] = count
    args = []
    where = window.clause("at", args, version_column=None)
    for workflow_id, kind, count in db.execute(
            f"SELECT workflow, kind, count(*) FROM message_feedback WHERE kind IN ('email_opened', 'email_clicked') "
            f"AND human = 1{where} GROUP BY 1, 2", args):
        if workflow_id in lines:
            lines[workflow_id]["opened" if kind == "email_opened" else "clicked"] = count
    for workflow_id, line in lines.items():
        args = [workflow_id]
        where = window.clause("at", args)
        (last,) = db.execute(f"SELECT max(at) FROM step_log WHERE workflow = ?{where}", args).fetchone()
        line["last_action_at"] = iso(last)
        line["conversion_rate"] = rate(line["converted"], line["entered"]) if workflow_id in goals else None
    return {"now": now.astimezone(UTC).isoformat(), "since": iso(stamp(window.since)) if window.since else None,
            "until": iso(stamp(window.until)) if window.until else None, "workflows": list(lines.values())}




def workflow_row(db: Any, workflow_id: str) -> tuple[int, str] | None:
    """(current version, state) of a deployed workflow, or None."""
    row = db.execute("SELECT current_version, state FROM workflows WHERE id = ?", [workflow_id]).fetchone()
    return (row[0], row[1]) if row else None


def workflow_ids(db: Any, removed: bool = True) -> list[str]:
    sql = "SELECT id FROM workflows" + ("" if removed else " WHERE state != 'removed'")
    return [name for (name,) in db.execute(sql + " ORDER BY id")]


def version_sources(db: Any, workflow_id: str) -> list[tuple[int, str]]:
    return [(version, source) for version, source in db.execute(
        "SELECT version, source FROM workflow_versions WHERE id = ? ORDER BY version", [workflow_id])]


def in_flight_positions(db: Any, workflow_id: str, window: Window) -> list[tuple[int, str | None, int]]:
    """(version, step path, count) of the enrollments in flight: where each stands, a wait's (asleep after it:
    `waiting.wait`) or its position (a wait_for, a postponed send, a pending webhook or coupon)."""
    args: list[Any] = [workflow_id, *IN_FLIGHT]
    where = window.clause("entered_at", args)
    return [(version, key, count) for version, key, count in db.execute(
            f"SELECT version, coalesce(json_extract(data, '$.waiting.wait'), position), count(*) FROM enrollments "
            f"WHERE workflow = ? AND state IN (?, ?, ?){where} GROUP BY 1, 2", args)]


Counts = dict[str, dict[str, int]]  # variant -> UTC day -> count


def split_counts(db: Any, workflow_id: str, label: str, variants: tuple[str, ...] | list[str], window: Window,
                 converted_before: datetime | None = None) -> tuple[Counts, Counts]:
    """Per variant per UTC day: the contacts the hash assigned (a contact once, on the day of its first
    assignment, however often it entered; not those sent to a picked winner), and those of them who converted
    after an assignment (on the day of the first such conversion; before `converted_before` when given)."""
    args: list[Any] = [workflow_id, label]
    where = window.clause("s.at", args, version_column="s.version")
    assigned: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    converted: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    before = stamp(converted_before) if converted_before is not None else "9"  # "9" sorts after every moment
    for variant, day, converted_day, count in db.execute(
            "SELECT variant, day, converted_day, count(*) FROM ("
            "  SELECT json_extract(s.extra, '$.variant') AS variant, min(substr(s.at, 1, 10)) AS day,"
            "    min(CASE WHEN e.converted_at >= s.at AND e.converted_at < ? THEN substr(e.converted_at, 1, 10) END)"
            "      AS converted_day"
            "  FROM step_log s LEFT JOIN enrollments e ON e.id = s.enrollment"
            "  WHERE s.workflow = ? AND s.step = ? AND s.kind = 'split' AND json_extract(s.extra, '$.winner') IS NULL"
            f"{where} GROUP BY s.contact, variant) AS assigned GROUP BY 1, 2, 3", [before, *args]):
        if variant not in variants:
            continue  # a variant an earlier version had
        assigned[variant][day] += count
        if converted_day is not None:
            converted[variant][max(converted_day, day)] += count
    return assigned, converted


def stuck(db: Any, workflow_id: str | None, late: datetime, limit: int) -> tuple[int, list[tuple]]:
    """Enrollments of active workflows waiting for a wake-up before `late`: how many, and the oldest `limit`
    as (id, workflow, version, contact, step path, wake_at)."""
    scope, args = ("", []) if workflow_id is None else (" AND e.workflow = ?", [workflow_id])
    sql = (f"FROM enrollments e JOIN workflows w ON w.id = e.workflow WHERE e.state IN ('active', 'waiting') "
           f"AND e.wake_at < ? AND w.state = 'active'{scope}")
    total = db.execute(f"SELECT count(*) {sql}", [stamp(late), *args]).fetchone()[0]
    rows = [tuple(row) for row in db.execute(
        f"SELECT e.id, e.workflow, e.version, e.contact, coalesce(json_extract(e.data, '$.waiting.wait'), "
        f"e.position), e.wake_at {sql} ORDER BY e.wake_at LIMIT ?", [stamp(late), *args, limit])]
    return total, rows


def failed_enrollments(db: Any, workflow_id: str | None, limit: int) -> tuple[int, list[tuple]]:
    """How many enrollments failed, and the latest `limit` as (id, workflow, version, contact, step path,
    ended_at, reason)."""
    scope, args = ("", []) if workflow_id is None else (" AND e.workflow = ?", [workflow_id])
    sql = f"FROM enrollments e WHERE e.state = 'failed'{scope}"
    total = db.execute(f"SELECT count(*) {sql}", args).fetchone()[0]
    rows = [tuple(row) for row in db.execute(
        f"SELECT e.id, e.workflow, e.version, e.contact, e.position, e.ended_at, e.reason {sql} "
        f"ORDER BY e.ended_at DESC LIMIT ?", [*args, limit])]
    return total, rows


def problem_messages(db: Any, workflow_id: str | None, limit: int) -> tuple[int, list[tuple]]:
    """How many messages are parked or unknown, and the first `limit` as (id, workflow, contact, step, status,
    answer, updated_at)."""
    scope, args = ("", []) if workflow_id is None else (" AND e.workflow = ?", [workflow_id])
    sql = f"FROM messages e WHERE e.status IN ('parked', 'unknown'){scope}"
    total = db.execute(f"SELECT count(*) {sql}", args).fetchone()[0]
    rows = [tuple(row) for row in db.execute(
        f"SELECT e.id, e.workflow, e.contact, e.step, e.status, e.answer, e.updated_at {sql} ORDER BY e.id LIMIT ?",
        [*args, limit])]
    return total, rows
