"""Contacts in and out: import (upsert, streamed, all or nothing), show, list, unsubscribe, erase, export."""
from __future__ import annotations

import csv
import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache, partial
from math import isfinite
from pathlib import Path
from typing import Any, TextIO

from mauto.addresses import (
    CONTROL_CHARACTERS,
    KEY_LENGTH,
    REFUSED_CHARACTERS,
    normalise_email,
    normalise_phone,
    parse_email,
    shown,
    text_problem,
)
from mauto.consent import withdrawal
from mauto.datafiles import LIST_SEPARATOR, DataError, coerce
from mauto.engine.records import ContactState, Event
from mauto.errors import ExitCode, MautoError
from mauto.limits import EARLIEST, LATEST
from mauto.store.contact_rows import ADDRESS, COLUMN_FIELDS, CONSENT, typed_fields
from mauto.store.contact_rows import record_of as _record
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
    source_format,
)
from mauto.store.runtime import erase_activity  # the daemon's tables
from mauto.store.sqlite import Rollback, Store, normalise_address, stamp

CONTACT_COLUMNS = ("id", "email", "phone", "email_consent", "sms_consent", "fields", "created_at", "updated_at")
INSERT_CONTACT = f"INSERT INTO contacts ({', '.join(CONTACT_COLUMNS)}) VALUES ({', '.join('?' * len(CONTACT_COLUMNS))})"
UPDATE_CONTACT = f"UPDATE contacts SET {', '.join(f'{name} = ?' for name in CONTACT_COLUMNS[1:])} WHERE id = ?"
EVENT_COLUMNS = ("contact", "name", "at", "properties", "received_at")
INSERT_EVENT = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"


class ContactNotFound(MautoError):
    exit_code = ExitCode.FINDINGS


@dataclass
class ImportResult(FileResult):
    """What an import read, and did (or, when `committed` is False, would have done)."""

    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "read": self.read, "created": self.created, "updated": self.updated,
                "unchanged": self.unchanged, "rejected": self.problems.count, "committed": self.committed,
                "rejects": self.rejects, "problems": self.problem_dicts(),
                "notices": [{"path": n.path, "line": n.line, "message": n.message} for n in self.notices]}


# --- values ---------------------------------------------------------------------------------

def _stored(value: Any) -> Any:
    """A typed value as JSON keeps it: datetimes in UTC (fixed width), dates as YYYY-MM-DD."""
    if isinstance(value, datetime):
        return stamp(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _phone(region: str | None) -> Callable[[Any], str]:
    return lambda value: normalise_phone(value, region)


@lru_cache(maxsize=1024)
def _known_zone(name: str) -> bool:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(name)
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError (`../x`), OSError (a folder, a long name)
        return False
    return True


def _time_zone(value: Any) -> str:
    """A contact's `timezone`: an IANA zone name zoneinfo knows (trimmed); ValueError saying what to write."""
    import difflib
    from zoneinfo import available_timezones

    if isinstance(value, str) and text_problem(value, strict=True) is None and _known_zone(value.strip()):
        return value.strip()
    if not isinstance(value, str):
        raise ValueError(f"`{shown(value)}` is not a time zone; use an IANA name such as Europe/Paris")
    close = difflib.get_close_matches(value.strip()[:100], sorted(available_timezones()), n=1, cutoff=0.6)
    hint = f"; did you mean `{close[0]}`?" if close else "; use an IANA name such as Europe/Paris"
    raise ValueError(f"unknown time zone `{shown(value)}`{hint}")


# The built-in fields whose values are checked and put in one form by their own rules, whatever their type.
def _special(name: str, region: str | None) -> Callable[[Any], Any] | None:
    if name == "email":
        return normalise_email
    if name == "phone":
        return _phone(region)
    if name == "timezone":
        return _time_zone
    return None


def _slow_converter(name: str, declared: Any, zone: str, notices: list[str] | None = None,
                    region: str | None = None) -> Callable[[Any], Any]:
    """The general conversion of one field's values (datafiles.coerce, then as stored): the reference the
    fast paths of `field_converter` agree with, and what they fall back to (and word errors with).
    `email` is checked and normalised (mauto.addresses), `phone` too (in E.164, national numbers read in
    `region`), `timezone` must be a zone; the notices of the conversion go to `notices`, with the field."""
    special = _special(name, region)

    def convert(value: Any) -> Any:
        said: list[str] = []
        try:
            typed = (special(value) if special is not None and value is not None
                     else coerce(value, declared, zone, said))
        except ValueError as error:
            raise ValueError(f"field `{name}`: {error}") from None
        if said and notices is not None:
            notices.extend(f"field `{name}`: {text}" for text in said)
        return _stored(typed)

    return convert


_INTEGER = re.compile(r"[-+]?\d+")  # as datafiles.coerce reads integers
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_refused = REFUSED_CHARACTERS.search


def field_converter(name: str, declared: Any, zone: str, notices: list[str] | None = None,
                    region: str | None = None) -> Callable[[Any], Any]:
    """A function taking one of the field's values (a CSV cell, a JSON or YAML value) to the value stored,
    or raising ValueError("field `name`: ..."). Resolved once per field and import, not once per cell: the
    usual value of each type (a well-formed text from a CSV, a JSON number or boolean) takes a short path;
    anything else goes the general way (`_slow_converter`), which words the errors."""
    if name == "id":
        return _convert_id
    slow = _slow_converter(name, declared, zone, notices, region)
    if name in ("email", "phone", "timezone"):
        return slow  # checked by their own rules, which cost more than a call
    if isinstance(declared, dict):
        return _enum_converter(declared, slow)
    try:
        fast = _FAST_CONVERTERS.get(declared)
    except TypeError:  # an unhashable declaration names no type: the general way, as for an unknown one
        return slow
    return slow if fast is None else fast(slow)


def _convert_id(value: Any) -> str:
    """A contact id: a non-empty text or number, trimmed, without control characters or the erased prefix."""
    if type(value) is str and value.strip() and not CONTROL_CHARACTERS.search(value) and \
            not value.lstrip().startswith(ERASED_PREFIX) and len(value) <= KEY_LENGTH:
        return value.strip()
    if type(value) is str and value.strip().startswith(ERASED_PREFIX):
        raise ValueError(f"field `id`: ids beginning with `{ERASED_PREFIX}` are kept for erased contacts")
    if value is None or isinstance(value, (dict, list, bool)) or str(value).strip() == "":
        raise ValueError("`id` must be a non-empty text or number")
    text = str(value)
    problem = text_problem(text, strict=True)
    if problem is not None:  # an id ends up in logs, URLs and file names: no line breaks, no controls
        raise ValueError(f"field `id`: `{shown(text)}` {problem}")
    return text.strip()


# The short paths, one per declared type: each takes the field's general conversion (`slow`, which it falls
# back to for anything but the usual values) and gives the field's converter.

def _enum_converter(declared: dict[str, Any], slow: Callable[[Any], Any]) -> Callable[[Any], Any]:
    texts = {item for item in declared.get("enum", []) if type(item) is str}
    return lambda value: value if type(value) is str and value in texts else slow(value)


def _string_converter(slow: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: value if type(value) is str and not _refused(value) else slow(value)


def _integer_converter(slow: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert_integer(value: Any) -> Any:
        if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:
            return value
        # 18 digits always fit in 64 bits
        if type(value) is str and len(value) <= 18 and (value.isdecimal() or _INTEGER.fullmatch(value.strip())):
            return int(value)
        return slow(value)

    return convert_integer


def _number_converter(slow: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert_number(value: Any) -> Any:
        if (type(value) is int and _INT64_MIN <= value <= _INT64_MAX) or (type(value) is float and isfinite(value)):
            return value
        if type(value) is str:
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                if isfinite(number):
                    return number
        return slow(value)

    return convert_number


def _boolean_converter(slow: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert_boolean(value: Any) -> Any:
        if type(value) is bool:
            return value
        if type(value) is str:
            found = _BOOLEANS.get(value.strip().lower())
            if found is not None:
                return found
        return slow(value)

    return convert_boolean


def _date_converter(slow: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert_date(value: Any) -> Any:
        if type(value) is str:
            try:
                day = date.fromisoformat(value.strip())
            except ValueError:
                pass
            else:
                if EARLIEST.year <= day.year < LATEST.year:
                    return day.isoformat()
        return slow(value)

    return convert_date


def _list_converter(slow: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert_list(value: Any) -> Any:
        if type(value) is str and not _refused(value):
            return [item for item in map(str.strip, value.split(LIST_SEPARATOR)) if item]
        return slow(value)  # a list: its items are checked there

    return convert_list


# datetime (and any other type) has no short path: the general way.
_FAST_CONVERTERS: dict[str, Callable[[Callable[[Any], Any]], Callable[[Any], Any]]] = {
    "string": _string_converter,
    "integer": _integer_converter,
    "number": _number_converter,
    "boolean": _boolean_converter,
    "date": _date_converter,
    "list": _list_converter,
}


class ContactChecker:
    """Checks rows against the declared fields with one converter per field, made on first use.

    `region` is the project's `phone_region` (national phone numbers are read in it). `notices` holds what the
    last row checked was read with that is worth saying (emptied by the caller before each row)."""

    def __init__(self, fields: dict[str, Any], zone: str, key: str, region: str | None = None) -> None:
        self.fields = fields
        self.zone = zone
        self.key = key
        self.region = region
        self.notices: list[str] = []
        self.converters: dict[str, Callable[[Any], Any]] = {}

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row's values typed by the declared fields, as stored; ValueError saying what is wrong."""
        converters = self.converters
        try:
            values = {name: converters[name](value) for name, value in row.items()}
        except KeyError:  # a field not met before in this file (converters raise only ValueError)
            values = {}
            for name, value in row.items():
                convert = converters.get(name)
                if convert is None and name == "updated_at":  # an export's column: the store keeps its own
                    convert = converters[name] = str
                if convert is None:
                    if name not in self.fields:
                        raise ValueError(f"unknown contact field `{name}`; declare it under `contact_fields` in "
                                         "mauto.yaml") from None
                    convert = converters[name] = field_converter(name, self.fields[name], self.zone, self.notices,
                                                                 self.region)
                values[name] = convert(value)
        values.pop("updated_at", None)
        if values.get(self.key) is None:
            raise ValueError(f"row has no `{self.key}`"
                             + ("; import by email with --key email" if self.key == "id" else ""))
        if "created_at" in values and values["created_at"] is None:
            raise ValueError("`created_at` cannot be cleared: leave it out to keep the stored one "
                             "(a new contact gets the time of the import)")
        return values


def check_contact(row: dict[str, Any], fields: dict[str, Any], zone: str, key: str,
                  region: str | None = None) -> dict[str, Any]:
    """A row's values typed by the declared fields, as stored; ValueError saying what is wrong.
    (An import makes one ContactChecker and keeps its converters for the whole file.)"""
    return ContactChecker(fields, zone, key, region)(row)


def _json_encoder(sort_keys: bool) -> Callable[[Any], str]:
    """json.dumps(value, ensure_ascii=False, sort_keys=...), made once: json.dumps with options builds a
    JSONEncoder per call, and JSONEncoder.encode builds its C encoder per call, about a third of the time
    of encoding a contact's fields. (No circular check: the values come from parsed files.)"""
    encoder = json.JSONEncoder(ensure_ascii=False, sort_keys=sort_keys)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the plain way
        return encoder.encode
    encode = make(None, encoder.default, json.encoder.encode_basestring, None, ": ", ", ", sort_keys, False, True)

    def dumps(value: Any) -> str:
        if isinstance(value, str):
            return encoder.encode(value)
        return "".join(encode(value, 0))

    return dumps


_json = _json_encoder(sort_keys=False)
_sorted_json = _json_encoder(sort_keys=True)
_text = json.encoder.encode_basestring  # a str as a JSON string, as _json writes it (ensure_ascii off)
_NOT_IN_FIELDS = frozenset((*COLUMN_FIELDS, "id"))  # kept in their own columns, not in the `fields` JSON


def _contact_row(record: dict[str, Any], updated_at: str) -> tuple[tuple[Any, ...], str]:
    """A contacts row (in CONTACT_COLUMNS order) from a flat record, and its `fields` JSON."""
    extra = {name: value for name, value in record.items() if name not in _NOT_IN_FIELDS and value is not None}
    fields_json = _sorted_json(extra)
    return (record["id"], record.get("email"), record.get("phone"), int(bool(record.get("email_consent"))),
            int(bool(record.get("sms_consent"))), fields_json, record["created_at"], updated_at), fields_json


def _created_properties(record: dict[str, Any], fields_json: str) -> str:
    """The `contact_created` event's properties, {"fields": every field given, but `id` and nulls}, as JSON.
    The fields that are not columns are already encoded (`fields_json`, for the contacts row): spliced in,
    not encoded again."""
    email_consent, sms_consent, created_at = record["email_consent"], record["sms_consent"], record["created_at"]
    email, phone = record.get("email"), record.get("phone")
    if type(email_consent) is bool and type(sms_consent) is bool and type(created_at) is str and \
            (email is None or type(email) is str) and (phone is None or type(phone) is str):
        # The usual types, written out directly (what _json would write, without building a dict for it).
        head = (f'{{"email_consent": {"true" if email_consent else "false"}, '
                f'"sms_consent": {"true" if sms_consent else "false"}, "created_at": {_text(created_at)}'
                + (f', "email": {_text(email)}' if email is not None else "")
                + (f', "phone": {_text(phone)}' if phone is not None else "") + "}")
    else:
        head = _json({name: record[name] for name in ("email_consent", "sms_consent", "created_at", "email", "phone")
                      if record.get(name) is not None})
    if head == "{}":
        head = fields_json
    elif fields_json != "{}":
        head = f"{head[:-1]}, {fields_json[1:]}"
    return f'{{"fields": {head}}}'


def _event_row(contact: str, name: str, properties: dict[str, Any], now: str) -> dict[str, Any]:
    return {"contact": contact, "name": name, "at": now, "properties": json.dumps(properties, ensure_ascii=False),
            "received_at": now}


ERASED_PREFIX = "erased-"  # the ids `contacts erase` gives: never taken by an import


def new_contact_id() -> str:
    return "c-" + secrets.token_hex(8)


# --- import -----------------------------------------------------------------------------------

def import_contacts(store: Store, source: str | Path, *, fields: dict[str, Any], zone: str, fmt: str | None = None,
                    key: str = "id", skip_invalid: bool = False, rejects: Path | None = None,
                    batch_size: int = BATCH_SIZE, max_problems: int = MAX_PROBLEMS,
                    phone_region: str | None = None) -> ImportResult:
    """Upsert contacts from a CSV, JSON Lines or YAML file (`-`: standard input, with `fmt`).

    Rows are matched on `key` (`id` or `email`); given fields replace stored ones, absent
    fields are kept, a JSON/YAML `null` clears a field. Creations and changes add
    `contact_created` / `contact_updated` events. One transaction: with any bad row nothing
    is written, unless `skip_invalid`, which imports the good rows and writes the bad ones
    to `rejects`. Memory stays flat for CSV and JSON Lines (read `batch_size` rows at a time).
    Emails and phone numbers are stored in their normal form (mauto.addresses); national phone
    numbers are read in `phone_region` (the project's), refused without one. What a good row was
    read with that is worth saying (a local time that does not exist) is in `notices`.
    """
    if key not in ("id", "email"):
        raise MautoError(f"--key must be id or email, not `{key}`")
    check_rejects_path(source, rejects, store.path)  # before anything is opened: never the input, never the store
    fmt = source_format(source, fmt)
    shown = shown_name(source)
    result = ImportResult(shown, problems=Problems(max_problems), rejects=str(rejects) if rejects else None)
    aside = Rejects(rejects, fmt) if rejects is not None else None

    found = BatchProblems(result.problems, shown, aside)
    reject, flush = found.reject, found.flush
    check = ContactChecker(fields, zone, key, phone_region)  # one converter per field for the whole file

    try:
        with store.transaction() as db:
            # Keys seen in this file, kept by SQLite (on disk when large) rather than in a Python set,
            # so that memory does not grow with the file.
            db.execute("CREATE TEMP TABLE IF NOT EXISTS import_seen (key TEXT PRIMARY KEY, line INTEGER NOT NULL)")
            for batch in batches(source, fmt, batch_size):
                _import_batch(store, batch, result, reject, check, key, skip_invalid)
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


def _import_batch(store: Store, batch: list, result: ImportResult, reject: Any, check: ContactChecker, key: str,
                  skip_invalid: bool) -> None:
    """Check a batch (rows, duplicates, matches) and write it; problems go to `reject`."""
    bad = 0

    def note(line: int, row: dict[str, Any] | None, message: str) -> None:
        nonlocal bad
        bad += 1
        reject(line, row, message)

    checked = _checked_rows(batch, result, check, note)
    if not checked:
        return
    db = store.db
    fresh = _first_in_file(db, checked, key, note)
    by_id, by_email = _stored_matches(db, fresh, key)
    now = store.stamp()
    inserts, updates, events = _planned_writes(fresh, key, by_id, by_email, now, result, note)
    if (result.problems.count or bad) and not skip_invalid:
        return  # the transaction will be rolled back: checking goes on, writing would be wasted
    # The hot path: one prepared statement per batch. sqlite-utils' insert_all/upsert_all inspect every
    # value (jsonify_if_needed) and rebuild the SQL per chunk, about a third of an import's time, measured.
    if inserts:
        db.conn.executemany(INSERT_CONTACT, inserts)
    if updates:
        db.conn.executemany(UPDATE_CONTACT, updates)
    if events:
        db.conn.executemany(INSERT_EVENT, events)


Checked = tuple[int, dict[str, Any], dict[str, Any]]  # (line, the row as read, its values as stored)


def _checked_rows(batch: list, result: ImportResult, check: ContactChecker,
                  note: Callable[[int, dict[str, Any] | None, str], None]) -> list[Checked]:
    """The batch's rows that read and check well, with their values; the others go to `note`, the notices
    of the good ones to `result`."""
    checked = []
    for line, row in batch:
        result.read += 1
        if isinstance(row, DataError):
            note(line, None, row.message)
            continue
        check.notices.clear()
        try:
            checked.append((line, row, check(row)))
        except ValueError as error:
            note(line, row, str(error))
            continue
        for notice in check.notices:
            result.notice(line, notice)
    return checked


def _first_in_file(db: Any, checked: list[Checked], key: str,
                   note: Callable[[int, dict[str, Any] | None, str], None]) -> list[Checked]:
    """The rows whose key no earlier row of the file had (kept in temp.import_seen, batch after batch); the
    others go to `note`, which names the line of the first."""
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
    return fresh


def _stored_matches(db: Any, fresh: list[Checked], key: str) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """The stored contacts the rows may be: by id (the ids the rows give) and, importing by email, by the
    normal form of their email (several contacts may share one)."""
    if key == "id":
        return {row["id"]: row for row in _select(db, "id", [values["id"] for _, _, values in fresh])}, {}
    # Stored emails are in normal form, but a store written by an older version may hold an IDN domain
    # in its ASCII (punycode) form: look for both, and match on the normal form.
    emails = {values["email"] for _, _, values in fresh}
    emails |= {parse_email(email).smtp for email in emails}
    by_email: dict[str, list[dict]] = {}
    for row in _select(db, "email", sorted(emails)):
        by_email.setdefault(normalise_address(row["email"], "email"), []).append(row)
    return {row["id"]: row for row in _select(db, "id", [v["id"] for _, _, v in fresh if "id" in v])}, by_email


def _planned_writes(fresh: list[Checked], key: str, by_id: dict[str, dict], by_email: dict[str, list[dict]],
                    now: str, result: ImportResult, note: Callable[[int, dict[str, Any] | None, str], None],
                    ) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """The contacts rows to insert and to update and the events to add, for the rows matched to their stored
    contact (or to none: a new one); `result` counts them, rows that match no way go to `note`."""
    inserts, updates, events = [], [], []
    created: set[str] = set()  # ids of the contacts this batch creates: a second row giving one is refused
    for line, row, values in fresh:
        if key == "email":
            current, problem = _email_match(values, by_email, by_id)
            if problem is None and current is None and values["id"] in created:
                problem = _another_email(values["id"])
            if problem is not None:
                note(line, row, problem)
                continue
        else:
            current = by_id.get(values["id"])
        if current is None:
            record = {"email_consent": False, "sms_consent": False, "created_at": now, **values}
            contact, fields_json = _contact_row(record, now)
            inserts.append(contact)
            created.add(record["id"])
            events.append((record["id"], "contact_created", now, _created_properties(record, fields_json), now))
            result.created += 1
            continue
        before = _record(current)
        changed = [name for name, value in values.items() if name != "id" and before.get(name) != value]
        if not changed:
            result.unchanged += 1
            continue
        record = {**before, **values}
        contact, _ = _contact_row(record, now)
        updates.append(contact[1:] + contact[:1])
        events.append((record["id"], "contact_updated", now,
                       _json({"changed": changed, "previous": {name: before.get(name) for name in changed}}), now))
        result.updated += 1
    return inserts, updates, events


def _another_email(contact_id: str) -> str:
    return f"contact `{contact_id}` exists with another email; import with --key id to change an email"


def _email_match(values: dict[str, Any], by_email: dict[str, list[dict]],
                 by_id: dict[str, dict]) -> tuple[dict | None, str | None]:
    """Importing by email: (the stored contact with the row's email, or None for a new one, then given the id
    the row gives or a new one; None), or (None, why the row cannot be imported)."""
    matches = by_email.get(values["email"], [])
    if len(matches) > 1:
        return None, f"{len(matches)} contacts have the email `{values['email']}`; import them by id"
    current = matches[0] if matches else None
    if current is not None and values.get("id", current["id"]) != current["id"]:
        return None, f"the email `{values['email']}` belongs to contact `{current['id']}`, not `{values['id']}`"
    if current is None and values.get("id") in by_id:
        return None, _another_email(values["id"])
    if current is None:
        values.setdefault("id", new_contact_id())
    return current, None


def _select(db: Any, column: str, values: list[str]) -> list:
    if not values:
        return []
    marks = ",".join("?" * len(values))
    cursor = db.execute(f"SELECT * FROM contacts WHERE {column} IN ({marks}) AND erased_at IS NULL", values)
    names = [description[0] for description in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


# --- reading ------------------------------------------------------------------------------------

def _row(store: Store, contact_id: str) -> dict[str, Any]:
    with store.guard():
        rows = _select(store.db, "id", [contact_id])
    if not rows:
        raise ContactNotFound(f"no contact `{contact_id}`", store.shown)
    return rows[0]


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


EVENT_FUNCTIONS = ("has_event", "event_count")  # the expression functions that read the contact's events
WHERE_NAMES = ("contact", "now")  # `event` and `vars` have nothing to stand for in a list of contacts


@dataclass
class Where:
    """A --where expression, checked, with what it needs from the store."""

    expression: Any
    events: bool = False  # calls has_event/event_count: the contacts' events are read
    event_names: frozenset[str] | None = None  # the only events those calls name, when all are literal


def where_filter(source: str, option: str = "--where") -> Where:
    """Parse and check a --where expression as the lint checks a workflow's: names in scope, functions and
    their arguments, `within=` durations, nested `where=` strings. A problem is a MautoError (exit 2) saying
    what is wrong, never a traceback."""
    from mauto.workflow.expressions import FUNCTIONS, Expression, ExpressionError

    expression = Expression(source, option)
    calls = literal = 0
    names: set[str] = set()

    def check(text: str, nested: bool) -> None:
        nonlocal calls, literal
        inside = f"in `where=\"{text}\"`: " if nested else ""
        try:
            uses = Expression(text).uses if nested else expression.uses
            if not nested:
                expression.evaluator  # noqa: B018 - compiling is the check; the evaluator is cached
        except ExpressionError as error:
            raise MautoError(f"{option}: {inside}{error}") from None
        allowed = ("event", *WHERE_NAMES) if nested else WHERE_NAMES
        for use in uses:
            if use.kind == "name" and use.name not in allowed and use.name not in FUNCTIONS:
                if use.name == "event":
                    raise MautoError(f"{option}: `event` is not in scope here: no event has arrived (use "
                                     "has_event('name', where=\"event.total > 50\") to look at a contact's events)")
                raise MautoError(f"{option}: {inside}unknown name `{use.name}`{_hint(use.name, [*allowed, *FUNCTIONS])}"
                                 f" (names in scope: {', '.join(allowed)})")
            if use.kind == "call" and use.name not in FUNCTIONS:
                raise MautoError(f"{option}: {inside}unknown function `{use.name}()`{_hint(use.name, list(FUNCTIONS))}"
                                 f" (functions: {', '.join(name + '()' for name in FUNCTIONS)})")
            if use.kind == "argument":
                takes = FUNCTIONS[use.detail]
                if use.name.endswith(" positional"):
                    raise MautoError(f"{option}: {inside}`{use.detail}()` takes {len(takes)} argument(s): "
                                     f"{', '.join(takes)}")
                raise MautoError(f"{option}: {inside}`{use.detail}()` has no argument `{use.name}`"
                                 f"{_hint(use.name, list(takes[1:]))}; it takes {', '.join(takes)}")
            if use.kind == "duration":
                from mauto.workflow.durations import DurationError, parse_duration

                try:
                    parse_duration(use.name)
                except DurationError as error:
                    raise MautoError(f"{option}: {inside}{error}") from None
            if use.kind == "since":
                raise MautoError(f"{option}: {inside}`since='{use.name}'`: "
                                 + ("a contact outside a workflow has no entry; " if use.name == "entry" else "")
                                 + "since takes a datetime such as `now - duration('7d')`, or use within='7d'")
            if use.kind in ("call", "name") and use.name in EVENT_FUNCTIONS:
                calls += 1
            if use.kind == "event-name":
                literal += 1
                names.add(use.name)
            if use.kind == "nested":
                check(use.name, True)

    check(source, False)
    return Where(expression, calls > 0, frozenset(names) if calls and calls == literal else None)


def _hint(name: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _events_by_contact(store: Store, names: frozenset[str] | None) -> Iterator[tuple[str, list[Event]]]:
    """(contact id, its events in time order) for every contact with events, in contact id order; only the
    events named in `names` when given."""
    import itertools

    sql, parameters = "SELECT contact, id, name, at, properties FROM events", []
    if names is not None:
        sql += f" WHERE name IN ({','.join('?' * len(names))})"
        parameters = sorted(names)
    cursor = store.db.execute(sql + " ORDER BY contact, at, seq", parameters)
    for contact, rows in itertools.groupby(cursor, key=lambda row: row[0]):
        yield contact, [Event(contact, name, datetime.fromisoformat(at), json.loads(properties), event_id)
                        for _, event_id, name, at, properties in rows]


def iter_contacts(store: Store, fields: dict[str, Any], zone: str, where: str | None = None,
                  limit: int | None = None, now: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Contacts in id order (erased ones left out), those for which `where` is true, at most `limit`.

    `where` is an expression on `contact` and `now` with the workflow expressions' functions: has_event,
    event_count, days_since, in_list, duration (`within=` counts back from `now`, default the store's
    clock). The contacts' events are read only when the expression calls has_event or event_count (and
    then only the events it names, when it names them all), so a filter on fields reads no events.

    An expression that compiles to SQL (mauto.store.audience_sql) is a query; a contact the SQL cannot be
    sure of (odd stored data) and every contact of an expression that does not compile are evaluated in
    Python: the same contacts either way, and the same error on the same contact."""
    from mauto.store.audience_sql import SQL_DIALECTS, compile_where, indexed_fields

    check = where_filter(where) if where is not None else None
    moment = now or store.now()
    compiled = compile_where(check, fields, zone, moment, store.dialect,
                             indexed=indexed_fields(store.db, store.dialect)) \
        if check is not None and store.dialect in SQL_DIALECTS else None
    if check is not None and compiled is not None:
        yield from _sql_contacts(store, check, compiled, fields, zone, moment, limit)
        return
    found = 0
    with store.guard():
        events = _events_by_contact(store, check.event_names) if check is not None and check.events else iter(())
        pending = next(events, None)
        cursor = store.db.execute("SELECT * FROM contacts WHERE erased_at IS NULL ORDER BY id")
        names = [description[0] for description in cursor.description]
        for values in cursor:
            if limit is not None and found >= limit:
                return
            row = dict(zip(names, values, strict=True))
            if check is not None:
                # Both queries come in id order (SQLite's BINARY collation is code point order, as Python's
                # str comparison): walk the events alongside the contacts, one pass over each.
                while pending is not None and pending[0] < row["id"]:
                    pending = next(events, None)
                history = pending[1] if pending is not None and pending[0] == row["id"] else []
                if not _keeps(check, row, history, fields, zone, moment):
                    continue
            found += 1
            yield contact_view(row)


def _keeps(check: Where, row: dict[str, Any], history: list[Event], fields: dict[str, Any], zone: str,
           moment: datetime) -> bool:
    """Whether the Python evaluator keeps the contact (`history`: its events in time order); a MautoError
    naming the contact when the expression fails on it."""
    from mauto.engine.context import Scope

    state = ContactState(row["id"], typed_fields(_record(row), fields, zone), history)
    scope = Scope(state, partial(state.record, fields), moment, None, {}, None, zone)
    try:
        keep = check.expression.evaluate(**scope.names())
    except Exception as error:  # an expression error is the user's, whatever Jinja2 raises
        raise MautoError(f"--where: {type(error).__name__}: {error} (contact `{row['id']}`)") from None
    return bool(keep)


def _sql_contacts(store: Store, check: Where, compiled: Any, fields: dict[str, Any], zone: str,
                  moment: datetime, limit: int | None) -> Iterator[dict[str, Any]]:
    """iter_contacts by the compiled query: the contacts it keeps, in id order; those it is in doubt about
    (`mauto_doubt`) evaluated in Python with their events."""
    found = 0
    with store.guard():
        cursor = store.db.execute(compiled.select(), compiled.parameters)
        names = [description[0] for description in cursor.description]
        for values in cursor:
            if limit is not None and found >= limit:
                return
            row = dict(zip(names, values, strict=True))
            if row.pop("mauto_doubt"):
                history = [Event(row["id"], name, datetime.fromisoformat(at), json.loads(properties), event_id)
                           for event_id, name, at, properties in store.db.execute(
                               "SELECT id, name, at, properties FROM events WHERE contact = ? ORDER BY at, seq",
                               [row["id"]])] if check.events else []
                if not _keeps(check, row, history, fields, zone, moment):
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
            view = contact_view(dict(zip(names, values, strict=True)))
            write_contact(writer, out, view)
            count += 1
    return count


def write_contact(writer: Any, out: Any, view: dict[str, Any]) -> None:
    """One exported contact: a CSV row (`writer`; lists joined with `;`, objects as JSON, booleans as
    true/false, as `contacts import` reads them back), or a JSON Lines line (no writer)."""
    if writer is not None:
        writer.writerow({name: LIST_SEPARATOR.join(map(str, value)) if isinstance(value, list) else
                         json.dumps(value) if isinstance(value, dict) else
                         ("true" if value else "false") if isinstance(value, bool) else value
                         for name, value in view.items()})
    else:
        out.write(json.dumps(view, ensure_ascii=False) + "\n")


# --- consent and erasure ---------------------------------------------------------------------------

def unsubscribe(store: Store, contact_id: str, channel: str = "email") -> dict[str, Any]:
    """Now, what an `unsubscribed` event does when a tick handles it (`mauto.consent.withdrawal`, the one rule
    for both): consent off for `channel` and its address on the suppression list; and the event itself, which
    the next tick handles like any other (an `exit_on: [unsubscribed]`)."""
    if channel not in CONSENT:
        raise MautoError(f"channel must be email or sms, not `{channel}`")
    suppress, withdraw = withdrawal("unsubscribed", {"channel": channel})
    with store.transaction() as db:
        row = _row(store, contact_id)
        now = store.stamp()
        address = row[ADDRESS[suppress]] if suppress else None
        suppressed = store.suppress(address, suppress, "unsubscribed") if suppress and address else False
        was = bool(row[CONSENT[channel]])
        if withdraw:
            db.execute(f"UPDATE contacts SET {CONSENT[withdraw]} = 0, updated_at = ? WHERE id = ?", [now, contact_id])
        db.execute("INSERT INTO events (contact, name, at, properties, received_at) "
                   "VALUES (:contact, :name, :at, :properties, :received_at)",
                   _event_row(contact_id, "unsubscribed", {"channel": channel}, now))
    return {"contact": contact_id, "channel": channel, "had_consent": was, "address": bool(address),
            "newly_suppressed": suppressed}


def erase(store: Store, contact_id: str) -> dict[str, Any]:
    """Erasure on request: the contact's personal data goes, its activity stays as anonymous counts.

    The addresses go on the suppression list as hashes (never mailed or texted again); the
    contact's id becomes a random `erased-…` one (events, coupons, enrollments, messages, the step
    log follow by ON UPDATE CASCADE), its fields and every event's properties are emptied; event
    names and times stay. Its enrollments in flight end as `exited` ("the contact was erased") and
    lose their vars and trigger event; its messages lose address, subject and body (pending ones
    become `cancelled`), its webhook calls their request, its step log the why, its tasks their notes.
    """
    if store.dialect == "postgresql":
        done = _erase(store, contact_id)
        with store.guard():  # the old row versions, dead now, removed from the tables' pages at once
            store.db.execute("VACUUM contacts, events, enrollments, messages, calls, step_log, tasks")
        return done
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
        anonymous = ERASED_PREFIX + secrets.token_hex(8)
        db.execute("UPDATE contacts SET id = ?, email = NULL, phone = NULL, email_consent = 0, sms_consent = 0, "
                   "fields = '{}', updated_at = ?, erased_at = ? WHERE id = ?",
                   [anonymous, now, now, contact_id])
        events = db.execute("UPDATE events SET properties = '{}' WHERE contact = ?", [anonymous]).rowcount
        # The failures list names contacts without a foreign key (a failure outlives what it was about).
        db.execute("UPDATE failures SET contact = ? WHERE contact = ?", [anonymous, contact_id])
        if store.dialect == "postgresql":  # the several workers' queue (no foreign key: it is rebuilt each tick)
            db.execute("DELETE FROM due_queue WHERE contact = ?", [contact_id])
        keys = [(key, channel) for key, channel in db.execute(
            "SELECT key, channel FROM messages WHERE contact = ?", [anonymous])]
        ended = erase_activity(db, anonymous, now)
    return {"contact": contact_id, "anonymous_id": anonymous, "events_kept": events, "suppressed": suppressed,
            "enrollments_ended": ended, "message_keys": keys}
