"""The names expressions and templates see: contact, event, vars, now, and mauto's functions."""
from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from jinja2 import nodes

from mauto.engine.records import ContactState, Event, Record
from mauto.engine.timing import shifted
from mauto.workflow.durations import parse_duration
from mauto.workflow.expressions import Expression


@lru_cache(maxsize=4096)
def expression(source: str) -> Expression:
    """One Expression object (parsed and compiled once) per source text."""
    return Expression(source)


_BUILT = ("contact", "event", "vars")  # the names that cost a record to build


@lru_cache(maxsize=8192)
def built_names(source: str) -> frozenset[str]:
    """Which of the records an expression's text names (`contact`, `event`, `vars`); all three when it does
    not parse (its evaluation then fails as it always did)."""
    try:
        tree = expression(source).tree
    except ValueError:
        return frozenset(_BUILT)
    return frozenset(node.name for node in tree.find_all(nodes.Name) if node.name in _BUILT)


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

    def names(self, event: Record | None = None, built: frozenset[str] | tuple[str, ...] = _BUILT) -> dict[str, Any]:
        """Every name in scope; of the records (`contact`, `event`, `vars`) only those in `built`."""
        names = {
            "now": self.now,
            "has_event": self.has_event,
            "event_count": self.event_count,
            "days_since": self.days_since,
            "in_list": self.in_list,
            "duration": duration,
            "_zone": self.zone_name,
        }
        if "contact" in built:
            names["contact"] = self.contact_record
        if "event" in built:
            names["event"] = event if event is not None else self.event
        if "vars" in built:
            names["vars"] = Record(self.vars)
        return names

    def evaluate(self, source: str, event: Record | None = None) -> Any:
        return expression(source).evaluate(**self.names_for(source, event))

    def names_for(self, source: str, event: Record | None = None) -> dict[str, Any]:
        """The names for one expression: as `names`, without the records it does not name (a contact's record,
        the trigger event read back from the enrollment: the costly ones)."""
        return self.names(event, built_names(source))

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
