"""Contacts and events as the expressions and templates see them."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

BUILTIN_DEFAULTS: dict[str, Any] = {"score": 0, "tags": [], "lists": [], "email_consent": False,
                                    "sms_consent": False}


class Record:
    """Fields as attributes (and items), so `event.items` is the property, never dict.items."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        object.__setattr__(self, "_fields", fields)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._fields[name]

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def __repr__(self) -> str:
        return f"Record({self._fields!r})"


@dataclass(slots=True)
class Event:
    """An event of a contact: a name, a time, properties, and an optional id."""

    contact: str
    name: str
    at: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    id: str | None = None

    def record(self) -> Record:
        return Record({**self.properties, "name": self.name, "at": self.at, "id": self.id, "contact": self.contact})

    def to_dict(self) -> dict[str, Any]:
        return {"contact": self.contact, "name": self.name, "at": self.at.isoformat(), "id": self.id,
                "properties": _jsonable(self.properties)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(data["contact"], data["name"], datetime.fromisoformat(data["at"]), data.get("properties") or {},
                   data.get("id"))


@dataclass(slots=True)
class SentMessage:
    at: datetime
    channel: str
    marketing: bool
    workflow: str


@dataclass
class ContactState:
    """What the engine may read of a contact: fields, event history, messages sent, suppressions.

    The engine changes `fields` for update/score/lists steps (and says so in its
    effects) so that later steps see the change; the driver persists the effects.
    """

    id: str
    fields: dict[str, Any]
    events: list[Event] = field(default_factory=list)  # sorted by time
    messages: list[SentMessage] = field(default_factory=list)
    suppressed: set[str] = field(default_factory=set)  # channels on the suppression list

    def record(self, declared: dict[str, Any]) -> Record:
        """The contact as expressions see it: every declared field present (None when unset)."""
        values: dict[str, Any] = dict.fromkeys(declared)
        for name, default in BUILTIN_DEFAULTS.items():
            values[name] = list(default) if isinstance(default, list) else default
        values.update(self.fields)
        values["id"] = self.id
        return Record(values)


_PLAIN = (str, int, float, bool, type(None))  # what JSON holds as is (exactly these types: a subclass goes on)


def _jsonable(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def jsonable(value: Any) -> Any:
    """Dates and datetimes as ISO strings, recursively: what goes into enrollment state and JSON output."""
    return _jsonable(value)


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
