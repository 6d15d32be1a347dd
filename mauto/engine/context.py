"""The names expressions and templates see: contact, event, vars, now, and mauto's functions."""
from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from mauto.engine.records import ContactState, Event, Record
from mauto.engine.timing import shifted
from mauto.workflow.durations import parse_duration
from mauto.workflow.expressions import Expression


@lru_cache(maxsize=4096)
def expression(source: str) -> Expression:
    """One Expression object (parsed and compiled once) per source text."""
    return Expression(source)


class Scope:
    """Builds the evaluation names for one contact at one moment.

    `contact_record` and `event` may be given as zero-argument callables: most steps (waits, sends without
    vars) evaluate nothing, so the records are built only when a name is first asked for.
    """

    __slots__ = ("contact", "_contact_record", "now", "entered_at", "vars", "_event", "zone_name")

    def __init__(self, contact: ContactState, contact_record: Record | Callable[[], Record], now: datetime,
                 entered_at: datetime | None, vars: dict[str, Any], event: Record | Callable[[], Record | None] | None,
                 zone_name: str) -> None:
        self.contact = contact
        self._contact_record = contact_record
        self.now = now
        self.entered_at = entered_at
        self.vars = vars
        self._event = event
        self.zone_name = zone_name

    @property
    def contact_record(self) -> Record:
        if callable(self._contact_record) and not isinstance(self._contact_record, Record):
            self._contact_record = self._contact_record()
        return self._contact_record

    @property
    def event(self) -> Record | None:
        if callable(self._event) and not isinstance(self._event, Record):
            self._event = self._event()
        return self._event

    def names(self, event: Record | None = None) -> dict[str, Any]:
        return {
            "contact": self.contact_record,
            "event": event if event is not None else self.event,
            "vars": Record(self.vars),
            "now": self.now,
            "has_event": self.has_event,
            "event_count": self.event_count,
            "days_since": self.days_since,
            "in_list": self.in_list,
            "duration": duration,
            "_zone": self.zone_name,
        }

    def evaluate(self, source: str, event: Record | None = None) -> Any:
        return expression(source).evaluate(**self.names(event))

    def _matching(self, name: str, within: str | None, since: Any, where: str | None) -> list[Event]:
        lower = shifted(self.now, -parse_duration(within)) if within else None  # `within` 1,000y from year 1000
        if since == "entry":
            since = self.entered_at
        elif isinstance(since, str):
            since = datetime.fromisoformat(since)
        found = []
        for event in self.contact.events:
            if event.at > self.now:
                break
            if event.name != name or (lower is not None and event.at < lower) or (
                    since is not None and event.at < since):
                continue
            if where and not self.evaluate(where, event.record()):
                continue
            found.append(event)
        return found

    def has_event(self, name: str, within: str | None = None, since: Any = None, where: str | None = None) -> bool:
        return bool(self._matching(name, within, since, where))

    def event_count(self, name: str, within: str | None = None, since: Any = None, where: str | None = None) -> int:
        return len(self._matching(name, within, since, where))

    def days_since(self, moment: Any) -> int | None:
        if moment is None:
            return None
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment) if "T" in moment else date.fromisoformat(moment)
        if isinstance(moment, datetime):
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self.now.tzinfo)
            return math.floor((self.now - moment) / timedelta(days=1))
        from mauto.engine.timing import zone

        return (self.now.astimezone(zone(self.zone_name)).date() - moment).days

    def in_list(self, name: str) -> bool:
        return name in (self.contact_record.lists or [])


def duration(text: str) -> timedelta:
    return parse_duration(text)


Evaluator = Callable[[str], Any]
