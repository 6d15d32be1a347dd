"""The SQL of `mauto inspect CONTACT` (mauto/stats/inspect.py): one contact's rows, read back from the store.

Each query reads one contact's rows through an index (contacts' primary key, suppressions' primary key,
events_contact_at, step_log_contact_at, messages_contact, enrollments_contact_workflow, failures_contact, and
messages_ref for the messages opens and clicks name): never a scan of a table, however large the store grows.

`since` keeps the rows from that moment on (None: all of them); `limit` keeps the newest `limit` rows of a kind
(None: all of them). Rows come back as the store holds them: times as stored text, JSON as text.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from mauto.store.migrations import FEEDBACK_EVENTS
from mauto.store.sqlite import Store, address_hash, stamp

SENT_EVENTS = ("email_sent", "sms_sent")  # said by the message's own row: not read again as an event
_UNLIMITED = 2**63 - 1  # the LIMIT for none: the largest integer both engines take (SQLite's -1 is refused)
_REFS_A_QUERY = 500  # refs bound in one query: well under SQLite's limit on a statement's variables

_EVENTS_SQL = (
    "SELECT seq, id, name, at, properties FROM events WHERE contact = :contact AND at >= :since "
    # an email_sent of a message the timeline shows is that message's `sent`
    f"AND NOT (name IN ({', '.join(repr(name) for name in SENT_EVENTS)}) AND EXISTS (SELECT 1 FROM messages m "
    "WHERE m.ref = json_extract(events.properties, '$.message') AND m.contact = events.contact "
    "AND m.created_at >= :since)) "
    "ORDER BY at DESC, seq DESC LIMIT :limit")
_STEPS_SQL = (
    "SELECT id, at, workflow, version, step, kind, detail, channel, template, extra, enrollment FROM step_log "
    "WHERE contact = :contact AND at >= :since ORDER BY at DESC, id DESC LIMIT :limit")
_MESSAGE_COLUMNS = ("id, enrollment, workflow, version, step, channel, template, to_address, subject, status, "
                    "attempts, next_try_at, answer, created_at, sent_at, ref")
_MESSAGES_SQL = (f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE contact = :contact AND created_at >= :since "
                 "ORDER BY created_at DESC, id DESC LIMIT :limit")
_ENROLLMENT_KEYS = ("id", "workflow", "version", "state", "position", "wake_at", "entered_at", "ended_at", "reason",
                    "converted_at", "goal_until", "cause", "variants")
_ENROLLMENTS_SQL = (
    "SELECT id, workflow, version, state, position, wake_at, entered_at, ended_at, reason, converted_at, "
    "goal_until, CASE WHEN json_valid(data) THEN json_extract(data, '$.cause') END, "
    "CASE WHEN json_valid(data) THEN json_extract(data, '$.variants') END FROM enrollments WHERE contact = ?")
_FAILURES_SQL = ("SELECT id, at, moment, kind, ref, workflow, reason FROM failures WHERE contact = :contact "
                 "AND coalesce(moment, at) >= :since ORDER BY coalesce(moment, at) DESC, id DESC LIMIT :limit")
# Opens and clicks of one message, through the index of events about messages: the query must name the events
# of its WHERE exactly as the index does, or SQLite does not use it.
# `prefetched` as the trigger that keeps message_feedback reads it (false, 0, "false" or none: a person), compared
# as text: SQLite's json_extract gives JSON's true as 1, PostgreSQL's as 'true'.
_FEEDBACK_SQL = (
    "SELECT name, CASE WHEN coalesce(CAST(json_extract(properties, '$.prefetched') AS TEXT), '0') IN ('0', 'false') "
    "THEN 0 ELSE 1 END, count(*) FROM events "
    f"WHERE json_extract(properties, '$.workflow') = ? AND name IN ({', '.join(repr(n) for n in FEEDBACK_EVENTS)}) "
    "AND json_extract(properties, '$.step') = ? AND json_extract(properties, '$.message') = ? GROUP BY 1, 2")


@contextlib.contextmanager
def read_snapshot(db: Database) -> Iterator[None]:
    """One read transaction around every query inside it (none if the caller's transaction is open already), so
    that the daemon writing meanwhile cannot show a message without its step; it writes nothing (rolled back).
    On PostgreSQL the transaction is REPEATABLE READ (READ COMMITTED, its default, reads anew at each query)."""
    if getattr(db, "dialect", "sqlite") == "postgresql":
        from psycopg.pq import TransactionStatus

        conn = db.connection  # type: ignore[attr-defined]  # psycopg's, in autocommit outside transactions
        if conn.info.transaction_status != TransactionStatus.IDLE:  # the caller's transaction is open
            yield
            return
        begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    else:
        conn = db.conn
        if conn.in_transaction:
            yield
            return
        begin = "BEGIN"
    conn.execute(begin)
    try:
        yield
    finally:
        conn.execute("ROLLBACK")


def contact(db: Database, contact_id: str) -> dict[str, Any] | None:
    """The contact's row of `contacts` (every column), None if the store holds no contact of that id."""
    return next(db.query("SELECT * FROM contacts WHERE id = ?", [contact_id]), None)


def suppression(store: Store, address: str, channel: str) -> dict[str, Any] | None:
    """The address's entry on the suppression list for `channel` (read as the store hashes it, national phone
    numbers in the store's region): `{"reason", "at"}` with `at` as stored; None if it is not on the list."""
    hit = store.db.execute("SELECT reason, at FROM suppressions WHERE address_hash = ? AND channel = ?",
                           [address_hash(address, channel, store.phone_region), channel]).fetchone()
    return {"reason": hit[0], "at": hit[1]} if hit is not None else None


def _window(contact_id: str, since: datetime | None, limit: int | None) -> dict[str, Any]:
    # An empty `since` is before every stored time: the store writes them as ISO text.
    return {"contact": contact_id, "since": stamp(since) if since is not None else "",
            "limit": min(limit, _UNLIMITED) if limit is not None else _UNLIMITED}


def events(db: Database, contact_id: str, since: datetime | None, limit: int | None) -> list[dict[str, Any]]:
    """The contact's events at or after `since`, newest first (`at`, then `seq`), at most `limit`: dicts of
    `seq, id, name, at, properties` (JSON text). An `email_sent`/`sms_sent` event whose message (its
    `properties.message`, the message's ref) is one of the contact's messages created at or after `since` is
    left out: that message's own row says it."""
    return list(db.query(_EVENTS_SQL, _window(contact_id, since, limit)))


def steps(db: Database, contact_id: str, since: datetime | None, limit: int | None) -> list[dict[str, Any]]:
    """The contact's step-log entries at or after `since`, newest first (`at`, then `id`), at most `limit`: dicts
    of `id, at, workflow, version, step, kind, detail, channel, template, extra` (JSON text) and `enrollment`
    (None in entries written before schema 7)."""
    return list(db.query(_STEPS_SQL, _window(contact_id, since, limit)))


def messages(db: Database, contact_id: str, since: datetime | None, limit: int | None) -> list[dict[str, Any]]:
    """The contact's messages created at or after `since`, newest first (`created_at`, then `id`), at most
    `limit`: dicts of `id, enrollment, workflow, version, step, channel, template, to_address, subject, status,
    attempts, next_try_at, answer, created_at, sent_at, ref`."""
    return list(db.query(_MESSAGES_SQL, _window(contact_id, since, limit)))


def failures(db: Database, contact_id: str, since: datetime | None, limit: int | None) -> list[dict[str, Any]]:
    """What ticks could not handle about the contact, at or after `since` (the moment it was about, else when it
    was recorded), newest first, at most `limit`: dicts of `id, at, moment, kind, ref, workflow, reason`."""
    return list(db.query(_FAILURES_SQL, _window(contact_id, since, limit)))


def enrollments(db: Database, contact_id: str) -> list[dict[str, Any]]:
    """Every enrollment of the contact, in no particular order: dicts of `id, workflow, version, state, position,
    wake_at, entered_at, ended_at, reason, converted_at, goal_until`, and from the enrollment's data `cause` (why
    it entered) and `variants` (its split variants, JSON text), each None when the data does not hold it."""
    return [dict(zip(_ENROLLMENT_KEYS, row, strict=True)) for row in db.execute(_ENROLLMENTS_SQL, [contact_id])]


def messages_by_ref(db: Database, contact_id: str, refs: Sequence[str]) -> list[dict[str, Any]]:
    """The contact's messages whose ref is one of `refs`, in the order of `refs` taken 500 at a time (within a
    batch as SQLite finds them): dicts with the columns `messages` gives."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(refs), _REFS_A_QUERY):
        chunk = refs[start:start + _REFS_A_QUERY]
        sql = (f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE ref IN ({', '.join('?' * len(chunk))}) "
               "AND ref IS NOT NULL AND contact = ?")
        found.extend(db.query(sql, [*chunk, contact_id]))
    return found


def feedback(db: Database, workflow: str, step: str, ref: str) -> list[tuple[str, bool, int]]:
    """The opens and clicks of one message (its workflow, step and ref, as the feedback events name it): one
    `(event name, whether a privacy proxy prefetched it, how many)` for each name and flag that occurs."""
    return [(name, bool(prefetched), count) for name, prefetched, count in db.execute(_FEEDBACK_SQL,
                                                                                    [workflow, step, ref])]
