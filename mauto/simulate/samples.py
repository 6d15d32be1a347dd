"""The sample data a simulation runs on: contacts, events, coupon pools and webhook answers, from files."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mauto.config import Project
from mauto.datafiles import DataError, coerce, parse_time, read_rows
from mauto.engine.records import ContactState, Event

DEFAULT_SAMPLES = {"contacts": "samples/contacts.yaml", "events": "samples/events.yaml",
                   "coupons": "samples/coupons.yaml", "webhooks": "samples/webhooks.yaml"}
EVENT_KEYS = ("contact", "event", "at", "id")


@dataclass
class Samples:
    contacts: list[ContactState]
    events: list[Event]
    coupons: dict[str, list[str]] = field(default_factory=dict)
    webhooks: dict[str, Any] = field(default_factory=dict)


def load_contacts(path: Path, project: Project) -> list[ContactState]:
    fields = project.contact_fields
    contacts: dict[str, ContactState] = {}
    for line, row in read_rows(path, as_written=True):  # declared types decide, as `contacts import` does
        contact_id = row.get("id")
        if contact_id is None or contact_id == "":
            raise DataError("row has no `id`", str(path), line)
        contact_id = str(contact_id)
        if contact_id in contacts:
            raise DataError(f"duplicate contact id `{contact_id}`", str(path), line)
        values: dict[str, Any] = {}
        for name, value in row.items():
            if name == "id":
                continue
            if name not in fields:
                raise DataError(f"unknown contact field `{name}`; declare it under `contact_fields` in mauto.yaml",
                                str(path), line)
            try:
                values[name] = coerce(value, fields[name], project.timezone)
            except ValueError as error:
                raise DataError(f"field `{name}`: {error}", str(path), line) from None
        contacts[contact_id] = ContactState(contact_id, values)
    return list(contacts.values())


def load_events(path: Path, project: Project, start: datetime, known: set[str]) -> list[Event]:
    catalogue = project.events
    events = []
    for line, row in read_rows(path):
        missing = [key for key in ("contact", "event", "at") if key not in row]
        if missing:
            raise DataError(f"event has no `{missing[0]}`", str(path), line)
        contact = str(row["contact"])
        if contact not in known:
            raise DataError(f"event for unknown contact `{contact}`", str(path), line)
        try:
            at = parse_time(row["at"], start, project.timezone)
        except ValueError as error:
            raise DataError(f"`at`: {error}", str(path), line) from None
        properties = {key: value for key, value in row.items() if key not in EVENT_KEYS}
        declared = (catalogue or {}).get(str(row["event"])) or {}
        for name, value in properties.items():
            if name in declared and declared[name] != "object":
                try:  # CSV cells are text: give them the catalogue's types
                    properties[name] = coerce(value, declared[name], project.timezone)
                except ValueError as error:
                    raise DataError(f"property `{name}`: {error}", str(path), line) from None
        events.append(Event(contact, str(row["event"]), at, properties,
                            str(row["id"]) if row.get("id") is not None else None))
    events.sort(key=lambda event: event.at)
    return events


def load_mapping(path: Path | None, what: str) -> dict:
    """A samples mapping: `coupons` (pool -> list of codes) or `webhooks` (URL -> JSON answer)."""
    from mauto.workflow.loader import YamlError, load

    if path is None or not path.exists():
        return {}
    try:
        document = load(path)
    except YamlError as error:
        raise DataError(error.message, str(path), error.line, error.col) from None
    rows = document.data if document.data is not None else {}
    if not isinstance(rows, dict):
        raise DataError(f"{what} must be a mapping", str(path), 1, 1)
    if what == "coupons":
        for pool, codes in rows.items():
            if not (isinstance(codes, list) and all(isinstance(code, (str, int)) for code in codes)):
                pos = document.pos((pool,))
                raise DataError(f"coupon pool `{pool}` must be a list of codes (`{pool}: [CODE1, CODE2]`)",
                                str(path), pos.line, pos.col)
        return {pool: [str(code) for code in codes] for pool, codes in rows.items()}
    return rows
