"""Contacts in and out: import (upsert, streamed, all or nothing), show, list, unsubscribe, erase, export."""
from __future__ import annotations

import csv
import json
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterator, TextIO

from mauto.datafiles import LIST_SEPARATOR, DataError, coerce
from mauto.engine.records import ContactState, Event
from mauto.errors import ExitCode, MautoError
from mauto.store.rows import (BATCH_SIZE, MAX_PROBLEMS, BatchProblems, Problems, Rejects, batches, shown_name,
                               source_format)
from mauto.store.sqlite import Rollback, Store, normalise_address, stamp

# Built-in fields kept in their own columns (searched, or checked before every send); every
# other field lives in the `fields` JSON column.
COLUMN_FIELDS = ("email", "phone", "email_consent", "sms_consent", "created_at")
CONSENT = {"email": "email_consent", "sms": "sms_consent"}
ADDRESS = {"email": "email", "sms": "phone"}


CONTACT_COLUMNS = ("id", "email", "phone", "email_consent", "sms_consent", "fields", "created_at", "updated_at")
INSERT_CONTACT = f"INSERT INTO contacts ({', '.join(CONTACT_COLUMNS)}) VALUES ({', '.join('?' * len(CONTACT_COLUMNS))})"
UPDATE_CONTACT = f"UPDATE contacts SET {', '.join(f'{name} = ?' for name in CONTACT_COLUMNS[1:])} WHERE id = ?"
EVENT_COLUMNS = ("contact", "name", "at", "properties", "received_at")
INSERT_EVENT = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"


class ContactNotFound(MautoError):
    exit_code = ExitCode.FINDINGS


@dataclass
class ImportResult:
    """What an import read, and did (or, when `committed` is False, would have done)."""

    source: str
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: Problems = field(default_factory=Problems)
    committed: bool = False
    rejects: str | None = None

    @property
    def ok(self) -> bool:
        return self.problems.count == 0

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "read": self.read, "created": self.created, "updated": self.updated,
                "unchanged": self.unchanged, "rejected": self.problems.count, "committed": self.committed,
                "rejects": self.rejects,
                "problems": [{"path": p.path, "line": p.line, "message": p.message} for p in self.problems.kept]}


# --- values ---------------------------------------------------------------------------------

def _stored(value: Any) -> Any:
    """A typed value as JSON keeps it: datetimes in UTC (fixed width), dates as YYYY-MM-DD."""
    if isinstance(value, datetime):
        return stamp(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _email(value: str) -> str:
    address = normalise_address(value, "email")
    if "@" not in address.strip("@"):
        raise ValueError(f"field `email`: `{value}` is not an email address")
    return address


def check_contact(row: dict[str, Any], fields: dict[str, Any], zone: str, key: str) -> dict[str, Any]:
    """A row's values typed by the declared fields, as stored; ValueError saying what is wrong."""
    values: dict[str, Any] = {}
    for name, value in row.items():
        if name not in fields:
            raise ValueError(f"unknown contact field `{name}`; declare it under `contact_fields` in mauto.yaml")
        if name == "id":
            if value is None or isinstance(value, (dict, list, bool)) or str(value).strip() == "":
                raise ValueError("`id` must be a non-empty text or number")
            values["id"] = str(value).strip()
            continue
        declared = fields[name]
        if declared == "string" and type(value) is str:  # most cells: skip the general coercion
            values[name] = value if name != "email" else _email(value)
            continue
        try:
            typed = coerce(value, declared, zone)
        except ValueError as error:
            raise ValueError(f"field `{name}`: {error}") from None
        if name == "email" and typed is not None:
            typed = _email(typed)
        values[name] = _stored(typed)
    if values.get(key) is None:
        raise ValueError(f"row has no `{key}`" + ("; import by email with --key email" if key == "id" else ""))
    return values


def _record(row: Any) -> dict[str, Any]:
    """A contacts row as one flat mapping of stored values."""
    record = {"id": row["id"], "email": row["email"], "phone": row["phone"],
              "email_consent": bool(row["email_consent"]), "sms_consent": bool(row["sms_consent"]),
              "created_at": row["created_at"]}
    record.update(json.loads(row["fields"]))
    return record


def _db_row(record: dict[str, Any], updated_at: str) -> dict[str, Any]:
    extra = {name: value for name, value in record.items()
             if name not in COLUMN_FIELDS and name != "id" and value is not None}
    return {"id": record["id"], "email": record.get("email"), "phone": record.get("phone"),
            "email_consent": int(bool(record.get("email_consent"))), "sms_consent": int(bool(record.get("sms_consent"))),
            "fields": json.dumps(extra, ensure_ascii=False, sort_keys=True),
            "created_at": record["created_at"], "updated_at": updated_at}


def _event_row(contact: str, name: str, properties: dict[str, Any], now: str) -> dict[str, Any]:
    return {"contact": contact, "name": name, "at": now, "properties": json.dumps(properties, ensure_ascii=False),
            "received_at": now}


def new_contact_id() -> str:
    return "c-" + secrets.token_hex(8)


# --- import -----------------------------------------------------------------------------------

def import_contacts(store: Store, source: str | Path, *, fields: dict[str, Any], zone: str, fmt: str | None = None,
                    key: str = "id", skip_invalid: bool = False, rejects: Path | None = None,
                    batch_size: int = BATCH_SIZE, max_problems: int = MAX_PROBLEMS) -> ImportResult:
    """Upsert contacts from a CSV, JSON Lines or YAML file (`-`: standard input, with `fmt`).

    Rows are matched on `key` (`id` or `email`); given fields replace stored ones, absent
    fields are kept, a JSON/YAML `null` clears a field. Creations and changes add
    `contact_created` / `contact_updated` events. One transaction: with any bad row nothing
    is written, unless `skip_invalid`, which imports the good rows and writes the bad ones
    to `rejects`. Memory stays flat for CSV and JSON Lines (read `batch_size` rows at a time).
    """
    if key not in ("id", "email"):
        raise MautoError(f"--key must be id or email, not `{key}`")
    fmt = source_format(source, fmt)
    shown = shown_name(source)
    result = ImportResult(shown, problems=Problems(max_problems), rejects=str(rejects) if rejects else None)
    aside = Rejects(rejects, fmt) if rejects is not None else None

    found = BatchProblems(result.problems, shown, aside)
    reject, flush = found.reject, found.flush

    try:
        with store.transaction() as db:
            # Keys seen in this file, kept by SQLite (on disk when large) rather than in a Python set,
            # so that memory does not grow with the file.
            db.execute("CREATE TEMP TABLE IF NOT EXISTS import_seen (key TEXT PRIMARY KEY, line INTEGER NOT NULL)")
            for batch in batches(source, fmt, batch_size):
                _import_batch(store, batch, result, reject, fields, zone, key, skip_invalid, batch_size)
                flush()
            if not result.ok and not skip_invalid:
                raise Rollback
            result.committed = True
    finally:
        if aside is not None:
            aside.close()
        with store.guard():
            store.db.execute("DROP TABLE IF EXISTS temp.import_seen")
    return result


def _import_batch(store: Store, batch: list, result: ImportResult, reject: Any, fields: dict[str, Any], zone: str,
                  key: str, skip_invalid: bool, batch_size: int) -> None:
    """Check a batch (rows, duplicates, matches) and write it; problems go to `reject`."""
    bad = 0

    def note(line: int, row: dict[str, Any] | None, message: str) -> None:
        nonlocal bad
        bad += 1
        reject(line, row, message)

    db = store.db
    checked = []
    for line, row in batch:
        result.read += 1
        if isinstance(row, DataError):
            note(line, None, row.message)
            continue
        try:
            checked.append((line, row, check_contact(row, fields, zone, key)))
        except ValueError as error:
            note(line, row, str(error))
    if not checked:
        return
    keys = list({values[key] for _, _, values in checked})
    marks = ",".join("?" * len(keys))
    earlier = dict(db.execute(f"SELECT key, line FROM temp.import_seen WHERE key IN ({marks})", keys).fetchall())
    fresh = []
    for line, row, values in checked:
        first = earlier.get(values[key])
        if first is not None:
            note(line, row, f"duplicate {key} `{values[key]}` in this file (first at line {first})")
            continue
        earlier[values[key]] = line
        fresh.append((line, row, values))
    db.conn.executemany("INSERT INTO temp.import_seen (key, line) VALUES (?, ?)",
                        [(values[key], line) for line, _, values in fresh])

    if key == "id":
        ids = [values["id"] for _, _, values in fresh]
        by_id = {row["id"]: row for row in _select(db, "id", ids)}
        by_email: dict[str, list] = {}
    else:
        emails = [values["email"] for _, _, values in fresh]
        by_email = {}
        for row in _select(db, "email", emails):
            by_email.setdefault(row["email"], []).append(row)
        by_id = {row["id"]: row for row in _select(db, "id", [v["id"] for _, _, v in fresh if "id" in v])}

    now = store.stamp()
    inserts, updates, events = [], [], []
    for line, row, values in fresh:
        if key == "email":
            matches = by_email.get(values["email"], [])
            if len(matches) > 1:
                note(line, row, f"{len(matches)} contacts have the email `{values['email']}`; import them by id")
                continue
            current = matches[0] if matches else None
            if current is not None and values.get("id", current["id"]) != current["id"]:
                note(line, row, f"the email `{values['email']}` belongs to contact `{current['id']}`, "
                                  f"not `{values['id']}`")
                continue
            if current is None and values.get("id") in by_id:
                note(line, row, f"contact `{values['id']}` exists with another email; "
                                  "import with --key id to change an email")
                continue
            if current is None:
                values.setdefault("id", new_contact_id())
        else:
            current = by_id.get(values["id"])
        if current is None:
            record = {"email_consent": False, "sms_consent": False, "created_at": now, **values}
            inserts.append(_db_row(record, now))
            created = {name: value for name, value in record.items() if name != "id" and value is not None}
            events.append(_event_row(record["id"], "contact_created", {"fields": created}, now))
            result.created += 1
            continue
        before = _record(current)
        changed = [name for name, value in values.items() if name != "id" and before.get(name) != value]
        if not changed:
            result.unchanged += 1
            continue
        record = {**before, **values}
        updates.append(_db_row(record, now))
        events.append(_event_row(record["id"], "contact_updated",
                                 {"changed": changed, "previous": {name: before.get(name) for name in changed}}, now))
        result.updated += 1
    if (result.problems.count or bad) and not skip_invalid:
        return  # the transaction will be rolled back: checking goes on, writing would be wasted
    # The hot path: one prepared statement per batch. sqlite-utils' insert_all/upsert_all inspect every
    # value (jsonify_if_needed) and rebuild the SQL per chunk, about a third of an import's time, measured.
    if inserts:
        db.conn.executemany(INSERT_CONTACT, [tuple(row[name] for name in CONTACT_COLUMNS) for row in inserts])
    if updates:
        db.conn.executemany(UPDATE_CONTACT, [tuple(row[name] for name in CONTACT_COLUMNS[1:]) + (row["id"],)
                                             for row in updates])
    if events:
        db.conn.executemany(INSERT_EVENT, [tuple(row[name] for name in EVENT_COLUMNS) for row in events])


def _select(db: Any, column: str, values: list[str]) -> list:
    if not values:
        return []
    marks = ",".join("?" * len(values))
    cursor = db.execute(f"SELECT * FROM contacts WHERE {column} IN ({marks}) AND erased_at IS NULL", values)
    names = [description[0] for description in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


# --- reading ------------------------------------------------------------------------------------

def _row(store: Store, contact_id: str) -> dict[str, Any]:
    with store.guard():
        rows = _select(store.db, "id", [contact_id])
    if not rows:
        raise ContactNotFound(f"no contact `{contact_id}`", store.shown)
    return rows[0]


def typed_fields(record: dict[str, Any], fields: dict[str, Any], zone: str) -> dict[str, Any]:
    """Stored values back to their declared types (dates, datetimes), as expressions and the engine see them."""
    typed = {}
    for name, value in record.items():
        if name == "id" or value is None:
            continue
        declared = fields.get(name)
        try:
            typed[name] = coerce(value, declared, zone) if declared in ("date", "datetime") else value
        except ValueError:
            typed[name] = value
    return typed


def contact_view(row: dict[str, Any]) -> dict[str, Any]:
    """A contact as `show`, `list` and `export` give it: stored values, JSON-ready."""
    record = _record(row)
    view = {"id": record.pop("id")}
    view.update({name: value for name, value in record.items() if value is not None})
    view["updated_at"] = row["updated_at"]
    return view


def show_contact(store: Store, contact_id: str, recent: int = 10) -> dict[str, Any]:
    """A contact, its latest events and the channels its addresses are suppressed on."""
    row = _row(store, contact_id)
    with store.guard():
        count = store.db.execute("SELECT count(*) FROM events WHERE contact = ?", [contact_id]).fetchone()[0]
        latest = [{"seq": seq, "id": event_id, "name": name, "at": at, "properties": json.loads(properties)}
                  for seq, event_id, name, at, properties in store.db.execute(
                      "SELECT seq, id, name, at, properties FROM events WHERE contact = ? ORDER BY at DESC, seq DESC "
                      "LIMIT ?", [contact_id, recent])]
    return {"contact": contact_view(row), "event_count": count, "events": latest,
            "suppressed": _suppressed_channels(store, row)}


def _suppressed_channels(store: Store, row: dict[str, Any]) -> list[str]:
    return sorted(channel for channel, column in ADDRESS.items()
                  if row.get(column) and store.is_suppressed(row[column], channel))


def contact_state(store: Store, contact_id: str, fields: dict[str, Any], zone: str) -> ContactState:
    """The contact as the engine reads it: typed fields, events in time order, suppressed channels."""
    row = _row(store, contact_id)
    with store.guard():
        events = [Event(contact_id, name, datetime.fromisoformat(at), json.loads(properties), event_id)
                  for event_id, name, at, properties in store.db.execute(
                      "SELECT id, name, at, properties FROM events WHERE contact = ? ORDER BY at, seq", [contact_id])]
    return ContactState(contact_id, typed_fields(_record(row), fields, zone), events,
                        suppressed=set(_suppressed_channels(store, row)))


def iter_contacts(store: Store, fields: dict[str, Any], zone: str, where: str | None = None,
                  limit: int | None = None, now: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Contacts in id order (erased ones left out), those for which `where` (an expression on `contact`
    and `now`) is true, at most `limit`."""
    from mauto.workflow.expressions import Expression, ExpressionError

    expression = None
    if where is not None:
        expression = Expression(where, "--where")
        try:
            expression.evaluator
        except ExpressionError as error:
            raise MautoError(f"--where: {error}") from None
    moment = now or store.now()
    found = 0
    with store.guard():
        cursor = store.db.execute("SELECT * FROM contacts WHERE erased_at IS NULL ORDER BY id")
        names = [description[0] for description in cursor.description]
        for values in cursor:
            if limit is not None and found >= limit:
                return
            row = dict(zip(names, values))
            if expression is not None:
                record = _record(row)
                state = ContactState(row["id"], typed_fields(record, fields, zone))
                try:
                    keep = expression.evaluate(contact=state.record(fields), now=moment)
                except Exception as error:  # an expression error is the user's, whatever Jinja2 raises
                    raise MautoError(f"--where: {type(error).__name__}: {error} (contact `{row['id']}`)") from None
                if not keep:
                    continue
            found += 1
            yield contact_view(row)


def export_contacts(store: Store, out: TextIO, fmt: str, fields: dict[str, Any]) -> int:
    """Every contact (erased ones left out) to `out` as CSV (the declared fields as columns; lists joined
    with `;`) or JSON Lines; returns how many."""
    if fmt not in ("csv", "jsonl"):
        raise MautoError(f"export format must be csv or jsonl, not `{fmt}`")
    columns = list(dict.fromkeys(["id", *fields, "updated_at"]))
    writer = csv.DictWriter(out, columns, extrasaction="ignore") if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    count = 0
    with store.guard():
        cursor = store.db.execute("SELECT * FROM contacts WHERE erased_at IS NULL ORDER BY id")
        names = [description[0] for description in cursor.description]
        for values in cursor:
            view = contact_view(dict(zip(names, values)))
            if writer is not None:
                writer.writerow({name: LIST_SEPARATOR.join(map(str, value)) if isinstance(value, list) else
                                 json.dumps(value) if isinstance(value, dict) else
                                 ("true" if value else "false") if isinstance(value, bool) else value
                                 for name, value in view.items()})
            else:
                out.write(json.dumps(view, ensure_ascii=False) + "\n")
            count += 1
    return count


# --- consent and erasure ---------------------------------------------------------------------------

def unsubscribe(store: Store, contact_id: str, channel: str = "email") -> dict[str, Any]:
    """Consent off for `channel`, the address on the suppression list, an `unsubscribed` event."""
    if channel not in CONSENT:
        raise MautoError(f"channel must be email or sms, not `{channel}`")
    with store.transaction() as db:
        row = _row(store, contact_id)
        now = store.stamp()
        address = row[ADDRESS[channel]]
        suppressed = store.suppress(address, channel, "unsubscribed") if address else False
        was = bool(row[CONSENT[channel]])
        db.execute(f"UPDATE contacts SET {CONSENT[channel]} = 0, updated_at = ? WHERE id = ?", [now, contact_id])
        db["events"].insert(_event_row(contact_id, "unsubscribed", {"channel": channel}, now))
    return {"contact": contact_id, "channel": channel, "had_consent": was, "address": bool(address),
            "newly_suppressed": suppressed}


def erase(store: Store, contact_id: str) -> dict[str, Any]:
    """Erasure on request: the contact's personal data goes, its activity stays as anonymous counts.

    The addresses go on the suppression list as hashes (never mailed or texted again); the
    contact's id becomes a random `erased-…` one (events and coupons follow by ON UPDATE
    CASCADE), its fields and every event's properties are emptied; event names and times stay.
    """
    with store.guard():
        # Zero freed space, so the old row does not linger in free pages of the file.
        store.db.execute("PRAGMA secure_delete = ON")
    try:
        done = _erase(store, contact_id)
        with store.guard():  # and copy the pages back from the WAL, so no old page image stays there
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        with store.guard():
            store.db.execute("PRAGMA secure_delete = OFF")
    return done


def _erase(store: Store, contact_id: str) -> dict[str, Any]:
    with store.transaction() as db:
        row = _row(store, contact_id)
        now = store.stamp()
        suppressed = [channel for channel, column in ADDRESS.items()
                      if row[column] and (store.suppress(row[column], channel, "erased") or True)]
        anonymous = "erased-" + secrets.token_hex(8)
        db.execute("UPDATE contacts SET id = ?, email = NULL, phone = NULL, email_consent = 0, sms_consent = 0, "
                   "fields = '{}', updated_at = ?, erased_at = ? WHERE id = ?",
                   [anonymous, now, now, contact_id])
        events = db.execute("UPDATE events SET properties = '{}' WHERE contact = ?", [anonymous]).rowcount
    return {"contact": contact_id, "anonymous_id": anonymous, "events_kept": events, "suppressed": suppressed}
