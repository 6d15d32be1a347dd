"""Building blocks for the engine tests: workflows from inline YAML, contacts, a small driver, times."""
from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from mauto.config import BUILTIN_FIELDS
from mauto.engine.interpreter import Engine, Settings
from mauto.engine.records import ContactState, Event
from mauto.engine.state import PENDING, Enrollment, LogEntry, Outcome
from mauto.workflow.loader import parse
from mauto.workflow.model import Workflow, build
from mauto.workflow.schema import validate

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
FIELDS = {**BUILTIN_FIELDS, "first_name": "string", "country": "string", "birthday": "date",
          "lifecycle": {"enum": ["lead", "customer"]}, "plan": "string"}


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def new_york(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def workflow(source: str, head: bool = True) -> Workflow:
    """A workflow from YAML written in the test; `head` adds id, version, name and an event trigger."""
    text = textwrap.dedent(source).lstrip("\n")
    if head:
        text = "id: wf\nversion: 1\nname: Test\n" + ("" if "\ntrigger:" in "\n" + text else
                                                      "trigger: {event: go}\n") + text
    document = parse(text, "wf.yaml")
    problems = validate(document, "workflow")
    assert not problems, [problem.message for problem in problems]
    return build(document)


def engine(limits: dict | None = None, timezone_name: str = "Europe/Paris") -> Engine:
    return Engine(Settings(FIELDS, timezone_name, limits or {}))


def contact(contact_id: str = "c1", **fields: Any) -> ContactState:
    defaults = {"email": f"{contact_id}@example.com", "email_consent": True, "phone": "+33600000000",
                "sms_consent": True}
    return ContactState(contact_id, {**defaults, **fields})


def at(moment: datetime) -> datetime:
    """A moment as a wall-clock driver would pass it: in UTC."""
    return moment.astimezone(UTC)


class Run:
    """One enrollment driven by hand, the way a driver would: enroll, then advance/deliver/resume."""

    def __init__(self, flow: Workflow, person: ContactState | None = None, run_engine: Engine | None = None,
                 limits: dict | None = None) -> None:
        self.workflow = flow
        self.contact = person or contact()
        self.engine = run_engine or engine(limits)
        self.enrollment: Enrollment | None = None
        self.log: list[LogEntry] = []
        self.effects: list = []

    def _take(self, outcome: Outcome) -> Outcome:
        self.enrollment = outcome.enrollment
        self.log.extend(outcome.log)
        self.effects.extend(outcome.effects)
        return outcome

    def enroll(self, moment: datetime, event: Event | None = None) -> Outcome:
        if event is None:
            event = Event(self.contact.id, "go", moment)
        return self._take(self.engine.enroll(self.workflow, self.contact, moment, event, "e1"))

    def advance(self, moment: datetime) -> Outcome:
        return self._take(self.engine.advance(self.workflow, self.enrollment, self.contact, moment))

    def deliver(self, name: str, moment: datetime, **properties: Any) -> Outcome:
        event = Event(self.contact.id, name, moment, properties)
        self.contact.events.append(event)
        return self._take(self.engine.deliver(self.workflow, self.enrollment, self.contact, event))

    def resume(self, value: Any, moment: datetime) -> Outcome:
        return self._take(self.engine.resume(self.workflow, self.enrollment, self.contact, value, moment))

    def run_until(self, end: datetime) -> None:
        """Advance at every wake-up before `end`, as the simulation's clock would."""
        while self.enrollment is not None and not self.enrollment.ended and self.enrollment.state != PENDING:
            wake = self.enrollment.wake_time
            if wake is None or wake >= end:
                return
            self.advance(wake)

    @property
    def state(self) -> str:
        return self.enrollment.state

    def kinds(self) -> list[tuple[str, str]]:
        return [(entry.step, entry.kind) for entry in self.log]

    def sends(self) -> list[tuple[datetime, str, str]]:
        """(time in UTC, channel, template) of every send effect."""
        return [(effect.at.astimezone(UTC), effect.data["channel"], effect.data["template"])
                for effect in self.effects if effect.kind == "send"]

    def entries(self, kind: str) -> list[LogEntry]:
        return [entry for entry in self.log if entry.kind == kind]


def same(a: datetime, b: datetime) -> bool:
    """The same instant, and a tz-aware one."""
    return a.tzinfo is not None and a.astimezone(UTC) == b.astimezone(UTC)

