"""Events in: JSON Lines, checked line by line, idempotent on the sender's event id."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mauto.datafiles import DataError, coerce, parse_time
from mauto.store.rows import (
    BATCH_SIZE,
    MAX_PROBLEMS,
    BatchProblems,
    FileResult,
    Problems,
    Rejects,
    batches,
    check_rejects_path,
    shown_name,
)
from mauto.store.sqlite import Rollback, Store, stamp

EVENT_KEYS = ("contact", "event", "at", "id", "properties")
INSERT_EVENT = "INSERT OR IGNORE INTO events (id, contact, name, at, properties, received_at) VALUES (?, ?, ?, ?, ?, ?)"


@dataclass
class IngestResult(FileResult):
    read: int = 0
    stored: int = 0
    duplicates: int = 0  # events whose id was already stored (or came earlier in the file): stored once
    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "read": self.read, "stored": self.stored, "duplicates": self.duplicates,
                "rejected": self.problems.count, "committed": self.committed, "rejects": self.rejects,
                "problems": self.problem_dicts(),
                "notices": [{"path": n.path, "line": n.line, "message": n.message} for n in self.notices]}


def check_event(row: dict[str, Any], catalogue: dict[str, dict[str, Any]] | None, zone: str,
                notices: list[str] | None = None) -> dict[str, Any]:
    """A line as an events row (without `received_at`); ValueError saying what is wrong.

    Properties are the `properties` object and every other key beside contact, event, at, id. The event's
    name, `contact` and `id` may hold no control character (they end up in logs and keys); no text anywhere
    may hold a NUL or a lone surrogate; `at` must lie within mauto.limits. Properties the catalogue declares
    are typed and checked as contact fields are. `notices` receives what is worth saying about how a time
    was read (a local time that does not exist, and the moment taken)."""
    from mauto.addresses import check_value, shown, text_problem

    missing = [name for name in ("contact", "event", "at") if row.get(name) in (None, "")]
    if missing:
        raise ValueError(f"event has no `{missing[0]}`")
    name = row["event"]
    if not isinstance(name, str):
        raise ValueError("`event` must be an event name")
    problem = text_problem(name, strict=True)
    if problem is not None:
        raise ValueError(f"`event`: `{shown(name)}` {problem}")
    if catalogue is not None and name not in catalogue:
        raise ValueError(f"unknown event `{shown(name)}`; add it to `events` in mauto.yaml")
    if isinstance(row["contact"], (dict, list, bool)):
        raise ValueError("`contact` must be a contact id")
    contact = str(row["contact"])
    problem = text_problem(contact, strict=True)
    if problem is not None:
        raise ValueError(f"`contact`: `{shown(contact)}` {problem}")
    found: list[str] = []
    try:
        at = parse_time(row["at"], None, zone, found)
    except ValueError as error:
        raise ValueError(f"`at`: {error}") from None
    said = [f"`at`: {text}" for text in found]
    nested = row.get("properties", {})
    if not isinstance(nested, dict):
        raise ValueError("`properties` must be an object")
    beside = {key: value for key, value in row.items() if key not in EVENT_KEYS}
    twice = sorted(set(nested) & set(beside))
    if twice:  # which one was meant cannot be known (`channel: email` beside, `sms` inside): refused
        raise ValueError(f"property `{twice[0]}` is given both beside the event and in `properties`; keep one")
    properties = {**nested, **beside}
    declared = (catalogue or {}).get(name) or {}
    for key, value in properties.items():
        try:
            check_value(key)
            check_value(value)
        except ValueError as error:
            raise ValueError(f"property `{shown(key)}`: {error}") from None
        if key in declared and declared[key] != "object":
            typed_said: list[str] = []
            try:
                typed = coerce(value, declared[key], zone, typed_said)
            except ValueError as error:
                raise ValueError(f"property `{shown(key)}`: {error}") from None
            said.extend(f"property `{shown(key)}`: {text}" for text in typed_said)
            properties[key] = typed.isoformat() if hasattr(typed, "isoformat") else typed
    event_id = row.get("id")
    if isinstance(event_id, (dict, list, bool)):
        raise ValueError("`id` must be a text or number")
    if event_id is not None:
        problem = text_problem(str(event_id), strict=True)
        if problem is not None:
            raise ValueError(f"`id`: `{shown(event_id)}` {problem}")
    if notices is not None:
        notices.extend(said)
    event = {"contact": contact, "name": name, "at": stamp(at),
             "properties": json.dumps(properties, ensure_ascii=False, default=str)}
    if event_id not in (None, ""):
        event["id"] = str(event_id)
    return event


def ingest_events(store: Store, source: str | Path, *, catalogue: dict[str, dict[str, Any]] | None, zone: str,
                  skip_invalid: bool = False, rejects: Path | None = None, batch_size: int = BATCH_SIZE,
                  max_problems: int = MAX_PROBLEMS) -> IngestResult:
    """Store the events of a JSON Lines file (`-`: standard input).

    Each line: `contact` (an existing contact's id), `event` (in the catalogue when mauto.yaml
    has one), `at` (ISO 8601; without an offset, in the project's zone), an optional `id`,
    properties. An event whose `id` is already stored is skipped: ingestion is idempotent.
    All or nothing as for contacts, unless `skip_invalid`.
    """
    check_rejects_path(source, rejects, store.path)  # before anything is opened: never the input, never the store
    shown = shown_name(source)
    result = IngestResult(shown, problems=Problems(max_problems), rejects=str(rejects) if rejects else None)
    aside = Rejects(rejects, "jsonl") if rejects is not None else None

    found = BatchProblems(result.problems, shown, aside)
    reject, flush = found.reject, found.flush

    try:
        with store.transaction() as db:
            for batch in batches(source, "jsonl", batch_size):
                checked = []
                for line, row in batch:
                    result.read += 1
                    if isinstance(row, DataError):
                        reject(line, None, row.message)
                        continue
                    said: list[str] = []
                    try:
                        checked.append((line, row, check_event(row, catalogue, zone, said)))
                    except ValueError as error:
                        reject(line, row, str(error))
                        continue
                    for notice in said:
                        result.notice(line, notice)
                contacts = list({event["contact"] for _, _, event in checked})
                marks = ",".join("?" * len(contacts))
                known = {found for (found,) in db.execute(
                    f"SELECT id FROM contacts WHERE id IN ({marks}) AND erased_at IS NULL", contacts)
                } if contacts else set()
                now = store.stamp()
                good = []
                for line, row, event in checked:
                    if event["contact"] not in known:
                        reject(line, row, f"unknown contact `{event['contact']}`")
                        continue
                    event["received_at"] = now
                    good.append(event)
                flush()
                if result.problems.count and not skip_invalid:
                    continue  # will be rolled back: keep checking, stop writing
                before = db.conn.total_changes
                # OR IGNORE skips an event whose id is stored already (the UNIQUE index on id); events without
                # an id have NULL there, which is never a conflict. A prepared statement, not insert_all: see
                # contacts.py.
                db.conn.executemany(INSERT_EVENT, [(event.get("id"), event["contact"], event["name"], event["at"],
                                                    event["properties"], event["received_at"]) for event in good])
                stored = db.conn.total_changes - before
                result.stored += stored
                result.duplicates += len(good) - stored
            if not result.ok and not skip_invalid:
                raise Rollback
            result.committed = True
    finally:
        if aside is not None:
            aside.close()
    return result
