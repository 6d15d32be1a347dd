"""The daemon's SQL: events to process, enrollments, the outbox, webhook calls, the step log, tasks, timers.

Everything here runs inside the caller's transaction (`Store.transaction()`), except the few functions that
say they commit on their own (the outbox hand-off marks, which must be on disk before a byte goes out).
"""
from __future__ import annotations

import contextlib
import json
import secrets
from bisect import insort
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, overload

from mauto.consent import withdrawal as _withdrawal
from mauto.engine.records import ContactState, Event, SentMessage, jsonable
from mauto.engine.state import EXITED, Enrollment, LogEntry
from mauto.errors import MautoError, printable
from mauto.store.contact_rows import ADDRESS, COLUMN_FIELDS, typed_fields
from mauto.store.contact_rows import record_of as _record
from mauto.store.sqlite import Store, address_hash, row_lock, stamp

IN_FLIGHT = ("active", "waiting", "pending")


def _json(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False, sort_keys=True)


# --- small state -------------------------------------------------------------------------------------


def get_state(db: Any, key: str) -> str | None:
    row = db.execute("SELECT value FROM runner_state WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def set_state(db: Any, key: str, value: str) -> None:
    db.execute("INSERT INTO runner_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
               "value = excluded.value", [key, value])


# --- workflows ---------------------------------------------------------------------------------------


def running_workflows(db: Any) -> list[tuple[str, int, str, str]]:
    """(id, current version, state, enrolling since) of every workflow not removed."""
    return [tuple(row) for row in db.execute(
        "SELECT id, current_version, state, coalesce(enrolling_since, updated_at) FROM workflows "
        "WHERE state != 'removed' ORDER BY id")]


def paused_workflows(db: Any) -> set[str]:
    return {row[0] for row in db.execute("SELECT id FROM workflows WHERE state = 'paused'")}


def workflow_source(db: Any, workflow: str, version: int) -> str | None:
    row = db.execute("SELECT source FROM workflow_versions WHERE id = ? AND version = ?",
                     [workflow, version]).fetchone()
    return row[0] if row else None


# --- events ------------------------------------------------------------------------------------------


def _event(row: Any) -> Event:
    contact, name, at, properties, event_id = row
    return Event(contact, name, datetime.fromisoformat(at), json.loads(properties), event_id)


def skip_history(db: Any, before: datetime, at: str) -> int:
    """Mark unprocessed events older than `before` as seen without acting on them: the first tick's history."""
    return db.execute("UPDATE events SET processed_at = ? WHERE processed_at IS NULL AND at < ?",
                      [at, stamp(before)]).rowcount


def _of(contacts: list[str] | None, column: str = "contact") -> tuple[str, list[str]]:
    """An `AND column IN (…)` clause and its parameters for `contacts`; nothing for None (every contact)."""
    if contacts is None:
        return "", []
    return f" AND {column} IN ({','.join('?' * len(contacts))})", list(contacts)


def unprocessed_events(db: Any, until: datetime,
                       contacts: list[str] | None = None) -> list[tuple[int, Event | Unreadable]]:
    """(seq, event) of the events no tick has processed, up to `until` (of `contacts` only, when given); a row
    that does not read back (its properties or time written by hand) comes as Unreadable, to be failed alone."""
    found: list[tuple[int, Event | Unreadable]] = []
    clause, args = _of(contacts)
    for row in db.execute("SELECT seq, contact, name, at, properties, id FROM events WHERE processed_at IS NULL "
                          f"AND at <= ?{clause} ORDER BY at, seq", [stamp(until), *args]):
        try:
            event = _event(row[1:])
            if not isinstance(event.properties, dict):
                raise ValueError("the event's properties are not an object")
            event.at.timestamp()  # noqa: B018 - a time without an offset fails here, not in the queue
        except Exception as error:  # noqa: BLE001
            found.append((row[0], Unreadable(str(row[0]), error, row[1])))
            continue
        found.append((row[0], event))
    return found


def mark_processed(db: Any, seqs: list[int], at: str) -> None:
    db.conn.executemany("UPDATE events SET processed_at = ? WHERE seq = ?", [(at, seq) for seq in seqs])


def hold_events(db: Any, rows: list[tuple[str, int, str]], at: str) -> None:
    """Keep events for enrollments of paused workflows: (workflow, event seq, enrollment) rows."""
    db.conn.executemany("INSERT OR IGNORE INTO held_events (workflow, seq, enrollment, held_at) VALUES (?, ?, ?, ?)",
                        [(*row, at) for row in rows])


def release_held(db: Any, rows: list[tuple[str, int]]) -> None:
    """The events (workflow, event seq) were handed to the enrollments they were held for: no longer held."""
    db.conn.executemany("DELETE FROM held_events WHERE workflow = ? AND seq = ?", rows)


def held_events(db: Any) -> list[tuple[int, str, list[str], Event | Unreadable]]:
    """(seq, workflow, enrollment ids, event) of the events held for workflows that are no longer paused, in the
    order they came (seq); a row that does not read back comes as Unreadable, to be failed alone."""
    found: list[tuple[int, str, list[str], Event | Unreadable]] = []
    rows = db.execute(
        "SELECT h.seq, h.workflow, json_group_array(h.enrollment), e.contact, e.name, e.at, e.properties, e.id "
        "FROM held_events h JOIN workflows w ON w.id = h.workflow LEFT JOIN events e ON e.seq = h.seq "
        "WHERE w.state != 'paused' GROUP BY h.seq, h.workflow, e.contact, e.name, e.at, e.properties, e.id "
        "ORDER BY h.seq, h.workflow").fetchall()
    for seq, workflow, enrollments, *event_row in rows:
        ids = sorted(json.loads(enrollments))
        try:
            if event_row[0] is None:
                raise LookupError("the event is no longer in the store")
            event = _event(event_row)
            if not isinstance(event.properties, dict):
                raise ValueError("the event's properties are not an object")
            event.at.timestamp()  # noqa: B018 - a time without an offset fails here, not in the queue
        except Exception as error:  # noqa: BLE001
            found.append((seq, workflow, ids, Unreadable(str(seq), error, event_row[0])))
            continue
        found.append((seq, workflow, ids, event))
    return found


def held_counts(db: Any) -> dict[str, int]:
    """How many events each workflow holds for its enrollments (kept while it is paused, applied on resume)."""
    return {row[0]: row[1] for row in db.execute(
        "SELECT workflow, count(DISTINCT seq) FROM held_events GROUP BY workflow")}


def insert_event(db: Any, event: Event, received_at: str) -> int:
    cursor = db.execute("INSERT INTO events (id, contact, name, at, properties, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                        [event.id, event.contact, event.name, stamp(event.at), _json(event.properties), received_at])
    return cursor.lastrowid


# --- contacts ----------------------------------------------------------------------------------------


def contact_ids(db: Any) -> Iterator[str]:
    for (contact,) in db.execute("SELECT id FROM contacts WHERE erased_at IS NULL ORDER BY id"):
        yield contact


def contact_rows(db: Any, fields: dict[str, Any], zone: str) -> Iterator[ContactState]:
    """Every contact's typed fields (no events): what date triggers look at."""
    for row in db.query("SELECT * FROM contacts WHERE erased_at IS NULL ORDER BY id"):
        record = _record(row)
        yield ContactState(record["id"], typed_fields(record, fields, zone))


def load_contact(db: Any, contact_id: str, fields: dict[str, Any], zone: str,
                 region: str | None = None) -> ContactState | None:
    """The contact as the engine reads it: typed fields, the events already processed, the messages made
    for it (frequency caps), and the channels its addresses are suppressed on."""
    # PostgreSQL: the row locked for the transaction, as a claim locks it (a no-op then), so that the plan, which
    # reads contacts without a claim, writes back no row that `mauto serve` changed meanwhile (a list left)
    row = next(db.query(f"SELECT * FROM contacts WHERE id = ? AND erased_at IS NULL{row_lock(db)}", [contact_id]),
               None)
    if row is None:
        return None
    record = _record(row)
    events = [_event(row) for row in db.execute(
        "SELECT contact, name, at, properties, id FROM events WHERE contact = ? AND processed_at IS NOT NULL "
        "ORDER BY at, seq", [contact_id])]
    messages = [SentMessage(datetime.fromisoformat(at), channel, bool(marketing), workflow)
                for at, channel, marketing, workflow in db.execute(
                    "SELECT created_at, channel, marketing, workflow FROM messages WHERE contact = ? AND "
                    "status != 'cancelled' ORDER BY created_at", [contact_id])]
    suppressed = {channel for channel, column in ADDRESS.items() if record.get(column) and db.execute(
        "SELECT 1 FROM suppressions WHERE address_hash = ? AND channel = ?",
        [address_hash(record[column], channel, region), channel]).fetchone()}
    return ContactState(contact_id, typed_fields(record, fields, zone), events, messages, suppressed)


def add_event(contact: ContactState, event: Event) -> None:
    """Put an event into a loaded contact's history in time order (a late event lands in its place)."""
    insort(contact.events, event, key=lambda item: item.at)


def save_contact(db: Any, contact: ContactState, at: str) -> None:
    """Write back the fields steps changed (update, score, lists)."""
    values = jsonable(contact.fields)
    extra = {name: value for name, value in values.items()
             if name not in COLUMN_FIELDS and name != "id" and value is not None}
    db.execute("UPDATE contacts SET email = ?, phone = ?, email_consent = ?, sms_consent = ?, fields = ?, "
               "updated_at = ? WHERE id = ?",
               [values.get("email"), values.get("phone"), int(bool(values.get("email_consent"))),
                int(bool(values.get("sms_consent"))), json.dumps(extra, ensure_ascii=False, sort_keys=True), at,
                contact.id])


def address_of(db: Any, contact_id: str) -> dict[str, Any] | None:
    row = db.execute("SELECT email, phone, email_consent, sms_consent FROM contacts WHERE id = ? AND "
                     "erased_at IS NULL", [contact_id]).fetchone()
    if row is None:
        return None
    return {"email": row[0], "phone": row[1], "email_consent": bool(row[2]), "sms_consent": bool(row[3])}


def withdrawal(event: Event) -> tuple[str | None, str | None]:
    """What an event says of consent (`mauto.consent.withdrawal`)."""
    return _withdrawal(event.name, event.properties)


def withdraw_consent(db: Any, contact_id: str, channel: str, at: str) -> None:
    column = {"email": "email_consent", "sms": "sms_consent"}[channel]
    db.execute(f"UPDATE contacts SET {column} = 0, updated_at = ? WHERE id = ?", [at, contact_id])


# --- enrollments -------------------------------------------------------------------------------------


def _enrollment(data: str) -> Enrollment:
    return Enrollment.from_dict(json.loads(data))


@dataclass
class Unreadable:
    """A row that does not read back (written by hand, or by a bug): failed alone, with why."""

    id: str
    error: Exception
    contact: str | None = None


def due_enrollments(db: Any, until: datetime, contacts: list[str] | None = None) -> Iterator[Enrollment | Unreadable]:
    """In-flight enrollments whose wake-up has come (or that were left with none), paused workflows aside (of
    `contacts` only, when given); read one at a time (a tick may find 100,000 due)."""
    clause, args = _of(contacts, "e.contact")
    for enrollment_id, data in db.execute(
            "SELECT e.id, e.data FROM enrollments e JOIN workflows w ON w.id = e.workflow "
            "WHERE e.state IN ('active', 'waiting') AND (e.wake_at IS NULL OR e.wake_at <= ?) AND "
            f"w.state != 'paused'{clause} ORDER BY e.wake_at, e.id", [stamp(until), *args]):
        try:
            enrollment = _enrollment(data)
            enrollment.wake_time  # noqa: B018 - a wake-up that does not parse is this row's problem too
        except Exception as error:  # noqa: BLE001
            yield Unreadable(enrollment_id, error)
            continue
        yield enrollment


def enrollment_ids(db: Any, contact: str, workflow: str | None = None, in_flight: bool = False) -> list[str]:
    """The contact's enrollments (in `workflow`; `in_flight` ones only), oldest first."""
    sql = "SELECT id, entered_at FROM enrollments WHERE contact = ?"
    args: list[Any] = [contact]
    if workflow is not None:
        sql += " AND workflow = ?"
        args.append(workflow)
    if in_flight:
        sql += f" AND state IN ({','.join('?' * len(IN_FLIGHT))})"
        args.extend(IN_FLIGHT)
    # Sorted here, not by an ORDER BY: with one, SQLite (no statistics: mauto runs no ANALYZE) reads the
    # workflow's every enrollment through enrollments_workflow_entered to skip a sort of a few rows, and a tick
    # enrolling N contacts took N² (docs/performance.md, "Enrolling on SQLite"); a contact has few enrollments.
    rows = db.execute(sql, args).fetchall()
    return [row[0] for row in sorted(rows, key=lambda row: (row[1], row[0]))]


def open_goal_ids(db: Any, contact: str, at: datetime) -> list[str]:
    """The contact's ended enrollments whose goal still counts at `at` (`goal_until`), oldest first."""
    return [row[0] for row in db.execute(
        "SELECT id FROM enrollments WHERE contact = ? AND goal_until IS NOT NULL AND goal_until >= ? "
        "ORDER BY entered_at, id", [contact, stamp(at)])]


def get_enrollment(db: Any, enrollment_id: str) -> Enrollment | None:
    row = db.execute("SELECT data FROM enrollments WHERE id = ?", [enrollment_id]).fetchone()
    return _enrollment(row[0]) if row else None


def save_enrollments(db: Any, enrollments: list[Enrollment]) -> None:
    db.conn.executemany(
        "INSERT INTO enrollments (id, workflow, version, contact, state, position, wake_at, data, entered_at, "
        "ended_at, reason, converted_at, goal_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET "
        "version = excluded.version, state = excluded.state, position = excluded.position, "
        "wake_at = excluded.wake_at, data = excluded.data, ended_at = excluded.ended_at, reason = excluded.reason, "
        "converted_at = excluded.converted_at, goal_until = excluded.goal_until",
        [(e.id, e.workflow, e.version, e.contact, e.state, e.position,
          stamp(e.wake_at) if e.wake_at else None, _json(vars(e)),  # no asdict deep copy; jsonable makes ISO text
          stamp(e.entered_at), stamp(e.ended_at) if e.ended_at else None, e.reason,
          stamp(e.converted_at) if e.converted_at else None, stamp(e.goal_until) if e.goal_until else None)
         for e in enrollments])


# --- step log, tasks, coupons, segments, timers --------------------------------------------------------


def insert_log(db: Any, entries: list[LogEntry]) -> None:
    db.conn.executemany("INSERT INTO step_log (at, contact, workflow, version, step, kind, detail, channel, template, "
                        "extra, enrollment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [(stamp(entry.at), entry.contact, entry.workflow, entry.version, entry.step, entry.kind,
                          entry.detail, entry.channel, entry.template, _json(entry.extra), entry.enrollment)
                         for entry in entries])


def insert_tasks(db: Any, tasks: list[dict[str, Any]]) -> None:
    db.conn.executemany("INSERT OR IGNORE INTO tasks (key, contact, workflow, step, title, assignee, notes, due_at, "
                        "created_at, handoff) VALUES (:key, :contact, :workflow, :step, :title, :assignee, :notes, "
                        ":due_at, :created_at, :handoff)", tasks)


def in_segment(db: Any, workflow: str, contact: str) -> bool:
    return db.execute("SELECT 1 FROM segment_members WHERE workflow = ? AND contact = ?",
                      [workflow, contact]).fetchone() is not None


def set_segment(db: Any, workflow: str, contact: str, member: bool, at: str) -> None:
    if member:
        db.execute("INSERT OR IGNORE INTO segment_members (workflow, contact, since) VALUES (?, ?, ?)",
                   [workflow, contact, at])
    else:
        db.execute("DELETE FROM segment_members WHERE workflow = ? AND contact = ?", [workflow, contact])


def timer(db: Any, workflow: str, contact: str) -> datetime | None:
    row = db.execute("SELECT last_at FROM timers WHERE workflow = ? AND contact = ?", [workflow, contact]).fetchone()
    return datetime.fromisoformat(row[0]) if row else None


def set_timer(db: Any, workflow: str, contact: str, last_at: datetime, due_at: datetime | None) -> None:
    db.execute("INSERT INTO timers (workflow, contact, last_at, due_at) VALUES (?, ?, ?, ?) ON CONFLICT "
               "(workflow, contact) DO UPDATE SET last_at = excluded.last_at, due_at = excluded.due_at",
               [workflow, contact, stamp(last_at), stamp(due_at) if due_at else None])


def due_timers(db: Any, until: datetime,
               contacts: list[str] | None = None) -> list[tuple[str, str, datetime | Exception, datetime]]:
    """(workflow, contact, last event's time, due time) of the inactivity timers due (of `contacts` only, when
    given); a last time that does not read back comes as the exception, to be failed alone."""
    found: list[tuple[str, str, datetime | Exception, datetime]] = []
    clause, args = _of(contacts)
    for workflow, contact, last_at, due_at in db.execute(
            "SELECT workflow, contact, last_at, due_at FROM timers WHERE due_at IS NOT NULL AND due_at <= ?"
            f"{clause} ORDER BY due_at", [stamp(until), *args]):
        try:
            due = datetime.fromisoformat(due_at)
            due.timestamp()  # noqa: B018
        except Exception:  # noqa: BLE001 - due_at <= until in text order: due now
            due = until
        try:
            last: datetime | Exception = datetime.fromisoformat(last_at)
        except Exception as error:  # noqa: BLE001
            last = error
        found.append((workflow, contact, last, due))
    return found


def clear_timer(db: Any, workflow: str, contact: str) -> None:
    db.execute("UPDATE timers SET due_at = NULL WHERE workflow = ? AND contact = ?", [workflow, contact])


# --- the outbox --------------------------------------------------------------------------------------

MESSAGE_COLUMNS = ("key", "message_id", "enrollment", "workflow", "version", "step", "contact", "channel", "template",
                   "marketing", "to_address", "sender", "subject", "body", "status", "next_try_at", "created_at",
                   "updated_at", "ref", "envelope", "release")


def insert_messages(db: Any, rows: list[dict[str, Any]]) -> None:
    """Queue messages; a key already queued (the same step re-run after a crash) is left as it is."""
    for row in rows:  # made by hand (a test, a tool): a message without a ref has no links of ours, nor a release
        if "ref" not in row:
            row.setdefault("ref", None)
            row.setdefault("envelope", None)
        row.setdefault("release", None)
    db.conn.executemany(f"INSERT OR IGNORE INTO messages ({', '.join(MESSAGE_COLUMNS)}) VALUES "
                   f"({', '.join(':' + name for name in MESSAGE_COLUMNS)})", rows)


_DUE_ITEMS = (  # a contact's due items by `?` (three times), as (contact, due): what queue_due groups
    "SELECT e.contact, coalesce(e.wake_at, '') AS due FROM enrollments e JOIN workflows w ON w.id = e.workflow "
    "WHERE e.state IN ('active', 'waiting') AND (e.wake_at IS NULL OR e.wake_at <= ?) AND w.state != 'paused' "
    "UNION ALL SELECT contact, at FROM events WHERE processed_at IS NULL AND at <= ? "
    "UNION ALL SELECT contact, due_at FROM timers WHERE due_at IS NOT NULL AND due_at <= ?")


def queue_due(db: Any, until: datetime) -> int:
    """PostgreSQL, several workers, in the plan (one worker at a time): the contacts with something due by `until`
    (a wake-up, an event not processed, an inactivity timer) written to `due_queue` with their first due moment,
    in place of what an earlier plan left; how many. Every worker's claims then read it in that order
    (`claim_contacts`): the due items are grouped once a tick, not once a claim."""
    moment = stamp(until)
    db.execute("DELETE FROM due_queue")
    return int(db.execute(f"INSERT INTO due_queue (contact, due) SELECT contact, min(due) FROM ({_DUE_ITEMS}) AS items "
                          "GROUP BY contact", [moment, moment, moment]).rowcount)


def requeue(db: Any, contacts: list[str], after: datetime | None, until: datetime) -> int:
    """PostgreSQL, several workers: the `contacts` a claim took back in `due_queue`, those with something due by
    `until` (the latest plan's moment) and after `after` (None: any), at their first such moment; how many. A
    worker puts back what its claim leaves: what comes due after its own clock (a worker whose clock is later
    takes it, in this tick), or all that is left when it stops half-way (the others take it)."""
    if not contacts:
        return 0
    marks = ",".join("?" * len(contacts))
    later = " AND due > ?" if after is not None else ""
    moment = stamp(until)
    return int(db.execute(
        f"INSERT INTO due_queue (contact, due) SELECT contact, min(due) FROM ({_DUE_ITEMS}) AS items WHERE "
        f"contact IN ({marks}){later} GROUP BY contact ON CONFLICT (contact) DO NOTHING",
        [moment, moment, moment, *contacts, *([stamp(after)] if after is not None else [])]).rowcount)


def claim_contacts(db: Any, until: datetime, limit: int) -> list[tuple[str, str]]:
    """PostgreSQL, several workers: up to `limit` contacts of the plan's `due_queue` due by `until`, as (id, first
    due moment), in the order of their first due moment (the contact that came first is served first: the last
    coupon of a pool goes to it), taken out of the queue; each row locked for the caller's transaction, rows
    another worker holds skipped (SKIP LOCKED), so that no two workers ever take one contact and none waits for
    another. The lock ends with the transaction, however it ends: a worker killed half-way leaves its contacts
    in the queue, for the others. A contact taken may have nothing left to do (the queue is as old as the
    plan): its claim reads its items again, and finds none."""
    # FOR NO KEY UPDATE of the contact: what references it meanwhile (an email_sent event another worker
    # records, an ingest) takes FOR KEY SHARE, which this does not block
    rows = db.execute(
        "DELETE FROM due_queue WHERE contact IN (SELECT q.contact FROM due_queue q JOIN contacts c ON c.id = q.contact "
        "WHERE q.due <= ? ORDER BY q.due, q.contact LIMIT ? FOR UPDATE OF q SKIP LOCKED FOR NO KEY UPDATE OF c "
        "SKIP LOCKED) RETURNING contact, due", [stamp(until), limit]).fetchall()
    return sorted(((row[0], row[1]) for row in rows), key=lambda row: (row[1], row[0]))


def recover_handoffs(db: Any, at: str, gone: Callable[[str], bool] | None = None) -> list[tuple[int, str]]:
    """Pending messages whose hand-off began but whose answer was never recorded: now `unknown`. With several
    workers (`gone`: whether the worker that began it has ended), only those whose worker is gone; one still
    talking to its server is left to finish."""
    rows = db.execute("SELECT id, key, handoff_by FROM messages WHERE status = 'pending' AND handoff_at IS NOT NULL"
                      ).fetchall()
    cut = [(row[0], row[1]) for row in rows if gone is None or row[2] is None or gone(row[2])]
    for message_id, _ in cut:
        db.execute("UPDATE messages SET status = 'unknown', updated_at = ?, answer = coalesce(answer, '') || "
                   "'the hand-off began at ' || handoff_at || ' and its answer was never recorded (crash?)' "
                   "WHERE id = ? AND status = 'pending' AND handoff_at IS NOT NULL", [at, message_id])
    return cut


CLAIM_LEASE = 120  # seconds a worker keeps the messages it took to send before another may take them


def claim_messages(db: Any, until: datetime, after_id: int, limit: int, worker: str,
                   wall: datetime) -> list[dict[str, Any]]:
    """PostgreSQL, several workers: `due_messages`, each taken for `worker` for CLAIM_LEASE seconds of the
    wall clock (`wall`): rows another worker is taking are skipped (FOR UPDATE SKIP LOCKED), and those another
    worker took and whose lease has not run out too. A worker killed before sending leaves its messages to the
    others once the lease runs out; one killed during a hand-off leaves it `unknown` (recover_handoffs)."""
    rows = list(db.query(
        "UPDATE messages SET claimed_by = ?, claimed_until = ? WHERE id IN (SELECT id FROM messages WHERE "
        "status = 'pending' AND handoff_at IS NULL AND (next_try_at IS NULL OR next_try_at <= ?) AND id > ? AND "
        "(claimed_until IS NULL OR claimed_until < ? OR claimed_by = ?) AND NOT EXISTS (SELECT 1 FROM workflows w "
        "WHERE w.id = messages.workflow AND w.state = 'paused') ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED) "
        "RETURNING *",
        [worker, stamp(wall + timedelta(seconds=CLAIM_LEASE)), stamp(until), after_id, stamp(wall), worker, limit]))
    return sorted(rows, key=lambda row: row["id"])


def due_messages(db: Any, until: datetime, after_id: int, limit: int) -> list[dict[str, Any]]:
    """Pending messages to hand over now, but for those of paused workflows: they wait for the resume."""
    return list(db.query("SELECT * FROM messages WHERE status = 'pending' AND handoff_at IS NULL AND "
                         "(next_try_at IS NULL OR next_try_at <= ?) AND id > ? AND NOT EXISTS (SELECT 1 FROM "
                         "workflows w WHERE w.id = messages.workflow AND w.state = 'paused') ORDER BY id LIMIT ?",
                         [stamp(until), after_id, limit]))


def messages(db: Any, statuses: tuple[str, ...] | None = None, limit: int = 100) -> list[dict[str, Any]]:
    sql = ("SELECT id, key, message_id, contact, workflow, step, channel, template, to_address, subject, status, "
           "attempts, next_try_at, answer, created_at, updated_at, sent_at FROM messages")
    args: list[Any] = []
    if statuses:
        sql += f" WHERE status IN ({','.join('?' * len(statuses))})"
        args.extend(statuses)
    return list(db.query(sql + " ORDER BY id LIMIT ?", [*args, limit]))


def message(db: Any, message_id: int) -> dict[str, Any] | None:
    return next(db.query("SELECT * FROM messages WHERE id = ?", [message_id]), None)


def status_counts(db: Any) -> dict[str, int]:
    counts = {status: 0 for status in ("pending", "sent", "parked", "unknown", "cancelled")}
    counts.update({row[0]: row[1] for row in db.execute("SELECT status, count(*) FROM messages GROUP BY status")})
    return counts


def release_claims(db: Any, worker: str) -> int:
    """The messages `worker` took and did not hand over (its channel was down, its run ended or stopped): free
    for the others at once, rather than when the lease runs out."""
    return int(db.execute("UPDATE messages SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ? AND "
                          "status = 'pending' AND handoff_at IS NULL", [worker]).rowcount)


def mark_handoff(store: Store, message_id: int, at: str) -> bool:
    """Record, committed, that the hand-off of a message begins: after a crash it is `unknown`, never resent.
    False when the message is no longer pending (a person dropped it meanwhile, another worker began it): then
    it must not go. The worker's name is kept with it (PostgreSQL: `PgStore.worker`)."""
    with store.transaction() as db:
        return db.execute("UPDATE messages SET handoff_at = ?, handoff_by = ?, attempts = attempts + 1, updated_at = ? "
                          "WHERE id = ? AND status = 'pending' AND handoff_at IS NULL",
                          [at, getattr(store, "worker", None), at, message_id]).rowcount == 1


def record_delivery(store: Store, message_id: int, status: str, answer: str, at: str, next_try_at: str | None = None,
                    provider_id: str | None = None, count_attempt: bool | int = False) -> None:
    """The provider's answer. `status`: sent | pending (a retry at next_try_at) | parked | unknown | cancelled.
    `count_attempt`: what to add to the message's attempts (True: 1; -1 takes back the one its hand-off mark
    added, for a provider's pushback, which is no failed attempt).
    A message sent becomes an `email_sent` / `sms_sent` event too (processed by the next tick: `wait_for`).

    Committed without waiting for the disk: the next hand-off mark's durable commit carries it there. A power
    loss in between loses the answer, and the message, its hand-off mark durable, becomes `unknown`."""
    answer, provider_id = _storable(answer), _storable(provider_id)
    with store.transaction(durable=False) as db:
        # Only a pending message takes an answer: one a person dropped meanwhile stays as they decided.
        changed = db.execute("UPDATE messages SET status = ?, answer = ?, next_try_at = ?, "
                   "provider_id = coalesce(?, provider_id), handoff_at = NULL, attempts = attempts + ?, "
                   "updated_at = ?, sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END "
                   "WHERE id = ? AND status = 'pending'",
                   [status, answer, next_try_at, provider_id, int(count_attempt), at, status, at,
                    message_id]).rowcount
        if changed and status == "sent":
            db.execute("INSERT INTO events (contact, name, at, properties, received_at) "
                       "SELECT contact, channel || '_sent', ?, json_object('workflow', workflow, 'step', step, "
                       "'template', template, 'message', ref), ? FROM messages WHERE id = ?", [at, at, message_id])


@overload
def _storable(text: str) -> str: ...
@overload
def _storable(text: None) -> None: ...
def _storable(text: str | None) -> str | None:
    """A provider's text as SQLite can keep it: lone surrogates (which UTF-8 cannot encode) as escapes."""
    if text is None or not isinstance(text, str):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def set_message_status(db: Any, message_id: int, status: str, answer: str, at: str,
                       next_try_at: str | None = None) -> None:
    db.execute("UPDATE messages SET status = ?, answer = ?, next_try_at = ?, handoff_at = NULL, updated_at = ? "
               "WHERE id = ?", [status, answer, next_try_at, at, message_id])


# --- webhook calls -----------------------------------------------------------------------------------


def insert_call(db: Any, key: str, enrollment: str, request: dict[str, Any], at: str) -> None:
    db.execute("INSERT OR IGNORE INTO calls (key, enrollment, request, status, next_try_at, created_at, updated_at) "
               "VALUES (?, ?, ?, 'pending', ?, ?, ?)", [key, enrollment, _json(request), at, at, at])


def due_calls(db: Any, until: datetime) -> list[dict[str, Any]]:
    # A paused workflow's calls wait for its resume: their answers would move its enrollments on.
    cursor = db.execute("SELECT id, key, enrollment, request, attempts FROM calls WHERE status = 'pending' AND "
                        "next_try_at <= ? AND NOT EXISTS (SELECT 1 FROM enrollments e JOIN workflows w ON "
                        "w.id = e.workflow WHERE e.id = calls.enrollment AND w.state = 'paused') "
                        "ORDER BY next_try_at, id", [stamp(until)])
    found = []
    for call_id, key, enrollment, request, attempts in cursor:
        item: dict[str, Any] = {"id": call_id, "key": key, "enrollment": enrollment, "attempts": attempts}
        try:  # a request that does not read back (written by hand) fails this call alone
            item["request"] = json.loads(request)
            if not isinstance(item["request"], dict) or not isinstance(item["request"].get("url"), str):
                raise ValueError("the stored request has no URL")
        except Exception as error:  # noqa: BLE001
            item["request"], item["error"] = None, error
        found.append(item)
    return found


def record_call(db: Any, call_id: int, status: str, answer: str, at: str, next_try_at: str | None = None) -> None:
    db.execute("UPDATE calls SET status = ?, answer = ?, attempts = attempts + 1, next_try_at = coalesce(?, "
               "next_try_at), updated_at = ? WHERE id = ?", [status, answer, next_try_at, at, call_id])


# --- failures: what a tick could not handle -------------------------------------------------------------

REASON_LIMIT = 1000  # characters of a failure's reason kept (an exception's text can be long)


def failure_reason(error: BaseException) -> str:
    """An error as one line for the failures list and the log: its type and text, control characters shown."""
    text = str(error) if isinstance(error, MautoError) else f"{type(error).__name__}: {error}"
    return printable(text)[:REASON_LIMIT]


def record_failure(db: Any, at: str, kind: str, reason: str, *, moment: datetime | None = None,
                   ref: str | None = None, contact: str | None = None, workflow: str | None = None) -> None:
    """One item a tick could not handle, with why: listed by `mauto failures`, counted in the tick's report."""
    db.execute("INSERT INTO failures (at, moment, kind, ref, contact, workflow, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
               [at, stamp(moment) if moment is not None else None, kind, ref, contact, workflow,
                reason[:REASON_LIMIT]])


def has_failure(db: Any, kind: str, reason: str, contact: str | None, workflow: str | None) -> bool:
    """Whether the same failure was recorded already (a trigger that fails for a contact every tick)."""
    return db.execute("SELECT 1 FROM failures WHERE kind = ? AND reason = ? AND contact IS ? AND workflow IS ? "
                      "LIMIT 1", [kind, reason[:REASON_LIMIT], contact, workflow]).fetchone() is not None


@contextlib.contextmanager
def savepoint(db: Any, name: str = "item") -> Iterator[None]:
    """A savepoint inside the caller's transaction: released when the block ends, rolled back to (then
    released) when it raises; the exception goes on."""
    db.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        db.execute(f"ROLLBACK TO {name}")
        db.execute(f"RELEASE {name}")
        raise
    db.execute(f"RELEASE {name}")


def enrollment_place(db: Any, enrollment_id: str) -> tuple[str, int, str, str | None] | None:
    """(workflow, version, contact, position) of an enrollment, from its columns (its data may not parse)."""
    row = db.execute("SELECT workflow, version, contact, position FROM enrollments WHERE id = ?",
                     [enrollment_id]).fetchone()
    return tuple(row) if row is not None else None


def fail_enrollment(db: Any, enrollment_id: str, reason: str, at: str) -> bool:
    """End an enrollment as failed without reading it through the engine (its data may be what is broken):
    the columns always, the JSON too when it parses. False when there is no such enrollment in flight."""
    reason = reason[:REASON_LIMIT]
    changed = db.execute(
        "UPDATE enrollments SET state = 'failed', wake_at = NULL, ended_at = ?, reason = ? WHERE id = ? AND "
        f"state IN ({','.join('?' * len(IN_FLIGHT))})", [at, reason, enrollment_id, *IN_FLIGHT]).rowcount
    if changed:
        row = db.execute("SELECT data FROM enrollments WHERE id = ?", [enrollment_id]).fetchone()
        try:
            data = json.loads(row[0])
        except (TypeError, ValueError):
            data = None
        if isinstance(data, dict):
            data.update(state="failed", wake_at=None, ended_at=at, reason=reason, pending=None)
            db.execute("UPDATE enrollments SET data = ? WHERE id = ?", [json.dumps(data), enrollment_id])
        if get_enrollment_or_none(db, enrollment_id) is None:  # its data is what was broken: made anew
            save_enrollments(db, [_from_columns(db, enrollment_id)])
    return bool(changed)


def get_enrollment_or_none(db: Any, enrollment_id: str) -> Enrollment | None:
    """The enrollment, or None when there is none or its data does not read back."""
    try:
        return get_enrollment(db, enrollment_id)
    except Exception:  # noqa: BLE001
        return None


def _from_columns(db: Any, enrollment_id: str) -> Enrollment:
    """An enrollment whose data does not read back, made again from its columns (no vars, no history)."""
    row = db.execute("SELECT workflow, version, contact, state, position, entered_at, ended_at, reason FROM "
                     "enrollments WHERE id = ?", [enrollment_id]).fetchone()
    workflow, version, contact, state, position, entered_at, ended_at, reason = row
    return Enrollment(enrollment_id, workflow, version, contact, entered_at, state=state, position=position,
                      ended_at=ended_at, reason=reason)


def failures(db: Any, limit: int = 100, since: str | None = None) -> list[dict[str, Any]]:
    """The newest items ticks could not handle, and the enrollments that ended failed, newest first."""
    sql = ("SELECT * FROM (SELECT at, moment, kind, ref, contact, workflow, reason FROM failures "
           "UNION ALL SELECT ended_at, NULL, 'enrollment', id, contact, workflow, coalesce(reason, '') "
           "FROM enrollments WHERE state = 'failed' AND id NOT IN (SELECT ref FROM failures WHERE kind = "
           "'enrollment' AND ref IS NOT NULL)) AS found")
    args: list[Any] = []
    if since is not None:
        sql += " WHERE at >= ?"
        args.append(since)
    return list(db.query(sql + " ORDER BY at DESC LIMIT ?", [*args, limit]))


def withdrawals_pending(db: Any, contact_id: str) -> set[str]:
    """Channels a contact withdrew from in events the store holds but no tick has processed yet (an
    `unsubscribed` stamped a little after the tick's moment, a complaint or a hard bounce just received):
    an unsubscribe known to the store when a message is handed over wins."""
    channels: set[str] = set()
    for name, properties in db.execute(
            "SELECT name, properties FROM events WHERE contact = ? AND processed_at IS NULL AND name IN "
            "('unsubscribed', 'email_complained', 'email_bounced')", [contact_id]):
        try:
            data = json.loads(properties)
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if name == "unsubscribed" and data.get("channel") not in ("email", "sms"):
            data["channel"] = "email"  # an unsubscribe whose channel cannot be read: the safe reading
        suppress, withdraw = _withdrawal(name, data)
        channels.update(channel for channel in (suppress, withdraw) if channel)
    return channels


def unsubscribe_secret(db: Any) -> str | None:
    """The store's own key for signing unsubscribe links (made by migration 4), or None."""
    return get_state(db, "unsubscribe_secret")


def signing_secret(db: Any, environ: Any, variable: Any) -> str | None:
    """The key links are signed with: the environment variable `variable` names when it is set (stores, or
    `mauto serve` on another machine, sharing one), else the store's own; None when there is none."""
    value = environ.get(variable) if isinstance(variable, str) and variable else None
    return value or unsubscribe_secret(db) or None  # an empty key is no key


def id_key(db: Any) -> str:
    """The key enrollment ids are made with (`mauto.driver.sqlite.enrollment_id`): the store's own key, never
    the environment's (a variable changed between a crash and the re-run would change the ids). Made when the
    store has none (inside the caller's transaction)."""
    key = unsubscribe_secret(db)
    if not key:  # an empty key is no key
        key = secrets.token_urlsafe(32)
        set_state(db, "unsubscribe_secret", key)
    return key


def ensure_unsubscribe_secret(db: Any) -> bool:
    """Make the store's unsubscribe key when it has none (inside the caller's transaction); True if made."""
    if get_state(db, "unsubscribe_secret") is not None:
        return False
    set_state(db, "unsubscribe_secret", secrets.token_urlsafe(32))
    return True


# --- erasure ---------------------------------------------------------------------------------------------


def erase_activity(db: Any, anonymous: str, now: str) -> int:
    """What the daemon wrote about an erased contact (already renamed by cascade): scrubbed; its enrollments
    in flight ended as exited. Returns how many were ended."""
    enrollments = [get_enrollment_or_none(db, enrollment_id) or _from_columns(db, enrollment_id)
                   for (enrollment_id,) in db.execute("SELECT id FROM enrollments WHERE contact = ?", [anonymous])]
    ended = 0
    for enrollment in enrollments:
        enrollment.contact, enrollment.vars, enrollment.trigger_event = anonymous, {}, None
        if not enrollment.ended:
            enrollment.state, enrollment.reason = EXITED, "the contact was erased"
            enrollment.ended_at = datetime.fromisoformat(now)
            ended += 1
        elif enrollment.reason is not None:  # a webhook's error or a template's may echo the contact's data
            enrollment.reason = f"{enrollment.state} (the reason went with the erased contact)"
        enrollment.pending = enrollment.waiting = enrollment.wake_at = None
        db.execute("UPDATE calls SET request = '{}', answer = NULL, status = CASE status WHEN 'pending' THEN "
                   "'failed' ELSE status END, updated_at = ? WHERE enrollment = ?", [now, enrollment.id])
    save_enrollments(db, enrollments)
    # What a paused workflow holds for them would only be dropped on resume: the contact is no more.
    db.execute("DELETE FROM held_events WHERE enrollment IN (SELECT id FROM enrollments WHERE contact = ?)",
               [anonymous])
    # A provider's answer often quotes the address ("550 5.1.1 <ana@example.com>: Recipient address rejected").
    db.execute("UPDATE messages SET to_address = NULL, subject = NULL, body = ?, updated_at = ?, "
               "answer = CASE status WHEN 'pending' THEN 'not sent: the contact was erased' "
               "ELSE status || ' (the answer went with the erased contact)' END, "
               "status = CASE status WHEN 'pending' THEN 'cancelled' ELSE status END WHERE contact = ?",
               [b"", now, anonymous])
    # A split's entry keeps its variant (no one's data; the A/B figures count it), every other extra goes.
    db.execute("UPDATE step_log SET detail = '', extra = CASE WHEN kind = 'split' THEN json_object('split', "
               "json_extract(extra, '$.split'), 'variant', json_extract(extra, '$.variant'), 'winner', "
               "json_extract(extra, '$.winner')) ELSE '{}' END WHERE contact = ?", [anonymous])
    # A CRM's answer to a task's hand-off may echo the contact's data as well.
    db.execute("UPDATE tasks SET title = 'a task for an erased contact', notes = NULL, handoff_answer = CASE WHEN "
               "handoff_answer IS NULL THEN NULL ELSE 'the answer went with the erased contact' END "
               "WHERE contact = ?", [anonymous])
    db.execute("UPDATE failures SET reason = kind || ' failed (the reason went with the erased contact)' "
               "WHERE contact = ?", [anonymous])
    return ended
