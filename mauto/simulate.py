"""`mauto simulate`: the engine on a virtual clock, with in-memory contacts and recording channels.

The clock jumps from one due moment to the next (an event, a wake-up, a date
or schedule trigger), so a month runs in an instant. The same engine runs in
the daemon; only the clock, the store and the channels differ.
"""
from __future__ import annotations

import heapq
import itertools
import json
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from mauto.config import Project
from mauto.datafiles import DataError, coerce, parse_time, read_rows
from mauto.engine.interpreter import Engine, Settings
from mauto.engine.records import ContactState, Event
from mauto.engine.state import FAILED, PENDING, Enrollment, LogEntry, Outcome
from mauto.engine.timing import zone
from mauto.engine.triggers import date_due, schedule_due
from mauto.errors import MautoError, printable
from mauto.messages import MessageRenderer, RenderedMessage
from mauto.workflow.durations import parse_duration
from mauto.workflow.model import Workflow

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


# --- results ------------------------------------------------------------------------

@dataclass
class Funnel:
    entered: int = 0
    steps: Counter = field(default_factory=Counter)  # step -> contacts that reached it
    sent: Counter = field(default_factory=Counter)  # channel -> messages
    suppressed: int = 0
    postponed: int = 0
    exited: int = 0
    converted: int = 0
    completed: int = 0
    failed: int = 0
    variants: Counter = field(default_factory=Counter)
    kinds: dict[str, str] = field(default_factory=dict)  # step -> what it is (wait, split, email ...)

    def to_dict(self) -> dict[str, Any]:
        return {"entered": self.entered, "steps": dict(self.steps), "sent": dict(self.sent),
                "suppressed": self.suppressed, "postponed": self.postponed, "exited": self.exited,
                "converted": self.converted, "completed": self.completed, "failed": self.failed,
                "variants": dict(self.variants)}


@dataclass
class SimulationResult:
    start: datetime
    end: datetime
    timeline: list[LogEntry]
    funnels: dict[str, Funnel]
    messages: list[RenderedMessage]
    contacts: dict[str, ContactState]
    zones: dict[str, str]
    enrollments: list[Enrollment]

    def entry_dict(self, entry: LogEntry) -> dict[str, Any]:
        data = entry.to_dict()
        data["at"] = entry.at.astimezone(zone(self.zones.get(entry.contact, "UTC"))).isoformat()
        return data

    def to_json(self) -> str:
        return json.dumps({
            "start": self.start.isoformat(), "end": self.end.isoformat(),
            "timeline": [self.entry_dict(entry) for entry in self.timeline],
            "summary": {"workflows": {workflow: funnel.to_dict() for workflow, funnel in self.funnels.items()},
                        "messages": len(self.messages)},
        }, indent=2, ensure_ascii=False, default=str)


# --- the simulation ---------------------------------------------------------------------

_EVENT, _WAKE, _DUE = 0, 1, 2


class Simulation:
    """One run: contacts, events and workflows on a virtual clock from `start` to `end`."""

    def __init__(self, project: Project, workflows: list[Workflow], samples: Samples, start: datetime,
                 end: datetime, all_workflows: Iterable[Workflow] = (), keep_timeline: bool = True,
                 renderer: MessageRenderer | None = None, contact_filter: str | None = None,
                 on_message: Callable[[RenderedMessage], None] | None = None) -> None:
        self.project = project
        self.engine = Engine(Settings.from_project(project), pause_after_send=True)
        self.workflows = workflows
        self.registry = {workflow.id: workflow for workflow in [*all_workflows, *workflows]}
        self.contacts = {contact.id: contact for contact in samples.contacts}
        self.samples = samples
        self.start, self.end = start, end
        self.keep_timeline = keep_timeline
        self.timeline: list[LogEntry] = []
        self.funnels: dict[str, Funnel] = {workflow.id: Funnel() for workflow in workflows}
        self.messages: list[RenderedMessage] = []
        self.renderer = renderer or MessageRenderer(project)
        self.contact_filter = contact_filter
        self.on_message = on_message
        self.coupons = {pool: deque(codes) for pool, codes in samples.coupons.items()}
        self.queue: list[tuple] = []
        self.sequence = itertools.count()
        self.enrollments: dict[str, Enrollment] = {}
        self.active: dict[str, list[str]] = defaultdict(list)  # contact -> enrollment ids not ended
        self.history: dict[tuple[str, str], list[Enrollment]] = defaultdict(list)  # (workflow, contact) -> all
        self.segment_state: dict[tuple[str, str], bool] = {}
        self.inactive_since: dict[tuple[str, str], datetime] = {}  # (workflow, contact) -> last event scheduled for
        self.ids = itertools.count(1)
        self.reached: dict[str, set] = defaultdict(set)

    # --- scheduling ---------------------------------------------------------------------

    def _push(self, at: datetime, priority: int, payload: tuple) -> int:
        """Queue an item; its sequence number (what orders items of the same moment and priority)."""
        number = next(self.sequence)
        # keyed on the POSIX timestamp: comparing aware datetimes of different zones converts both each time
        heapq.heappush(self.queue, (at.timestamp(), priority, number, at, payload))
        return number

    def _prepare(self) -> None:
        for event in self.samples.events:
            contact = self.contacts[event.contact]
            if event.at < self.start:
                contact.events.append(event)  # history: has_event and inactivity see it, it triggers nothing
            elif event.at < self.end:
                self._push(event.at, _EVENT, ("event", event))
        for workflow in self.workflows:
            kind = workflow.trigger.kind
            spec = workflow.trigger.value
            if kind == "date":
                for contact in self.contacts.values():
                    tz = zone(self.engine.zone_name(workflow, contact))
                    for moment, why in date_due(spec, contact.fields.get(spec["field"]), tz, self.start, self.end):
                        self._push(moment, _DUE, ("due", workflow.id, contact.id, why))
            elif kind == "schedule":
                tz = zone(spec.get("timezone") or self.project.timezone)
                for moment, why in schedule_due(spec, tz, self.start, self.end):
                    for contact in self.contacts.values():
                        self._push(moment, _DUE, ("due", workflow.id, contact.id, why))
            elif kind == "inactivity":
                for contact in self.contacts.values():
                    self._schedule_inactivity(workflow, contact, self.start)
            elif kind == "segment":
                self._push(self.start, _DUE, ("segments", workflow.id))

    def _schedule_inactivity(self, workflow: Workflow, contact: ContactState, now: datetime) -> None:
        spec = workflow.trigger.value
        last = self._last_event(workflow, contact, now)
        if last is None:
            return
        key = (workflow.id, contact.id)
        if self.inactive_since.get(key) == last.at:
            return  # already scheduled (or done) for this last event: an event `where` filtered out changes nothing
        due = max(last.at + parse_duration(spec["for"]), now)
        self._remember_inactivity(workflow, contact, last.at, due)
        if due < self.end:
            self._push(due, _DUE, ("inactive", workflow.id, contact.id, last.at))

    def _remember_inactivity(self, workflow: Workflow, contact: ContactState, last_at: datetime,
                             due: datetime) -> None:
        """The last event an inactivity timer counts from (the store also keeps the timer)."""
        self.inactive_since[(workflow.id, contact.id)] = last_at

    def _last_event(self, workflow: Workflow, contact: ContactState, now: datetime) -> Event | None:
        spec = workflow.trigger.value
        scope = self.engine.scope(workflow, contact, now, now, {}, None)
        for event in reversed(contact.events):
            if event.at <= now and event.name == spec["event"] and (
                    "where" not in spec or scope.evaluate(spec["where"], event.record())):
                return event
        return None

    # --- running ---------------------------------------------------------------------------

    def run(self) -> SimulationResult:
        self._prepare()
        while self.queue:
            _, _, _, at, payload = heapq.heappop(self.queue)
            if at >= self.end:
                break
            try:
                self._process(at, payload)
            except Exception as error:  # noqa: BLE001 - one item's failure is shown, the others go on
                self._item_failed(at, payload, error)
        zones = {contact.id: self.engine.contact_zone(contact) for contact in self.contacts.values()}
        return SimulationResult(self.start, self.end, self.timeline, self.funnels, self.messages, self.contacts,
                                zones, list(self.enrollments.values()))

    def _process(self, at: datetime, payload: tuple) -> None:
        """Handle one due item of the queue at its moment."""
        kind = payload[0]
        if kind == "event":
            self._on_event(payload[1])
        elif kind == "wake":
            enrollment = self.enrollments.get(payload[1])
            if enrollment is not None and enrollment.wake_at == payload[2] and not enrollment.ended:
                workflow = self._workflow_of(enrollment)
                if workflow is not None:
                    self._handle(workflow, self.engine.advance(workflow, enrollment,
                                                               self.contacts[enrollment.contact], at))
        elif kind == "due":
            _, workflow_id, contact_id, why = payload
            self._try_enroll(self.registry[workflow_id], self.contacts[contact_id], at, None, why)
        elif kind == "inactive":
            _, workflow_id, contact_id, last_at = payload
            workflow = self.registry[workflow_id]
            contact = self.contacts[contact_id]
            last = self._last_event(workflow, contact, at)
            if last is not None and last.at == last_at:
                spec = workflow.trigger.value
                self._try_enroll(workflow, contact, at, None, f"no {spec['event']} for {spec['for']}")
        elif kind == "segments":
            workflow = self.registry[payload[1]]
            for contact in self.contacts.values():
                try:
                    self._check_segment(workflow, contact, at)
                except Exception as error:  # noqa: BLE001 - this contact's failure alone
                    self._item_failed(at, ("due", workflow.id, contact.id), error)

    def _workflow_of(self, enrollment: Enrollment) -> Workflow | None:
        """The workflow an enrollment runs (None over a store: a version that does not load)."""
        return self.registry[enrollment.workflow]

    def _item_failed(self, at: datetime, payload: tuple, error: Exception) -> None:
        """An item the engine could not handle (a bug met by one contact's data, a moment out of range): its
        enrollment ends failed, or the failure is shown on the contact's timeline; the run goes on, as a
        tick does (where the item is also rolled back: docs/daemon.md)."""
        reason = printable(f"{type(error).__name__}: {error}")
        kind = payload[0]
        if kind == "wake":
            enrollment = self.enrollments.get(payload[1])
            if enrollment is None:
                return
            if not enrollment.ended:
                enrollment.state, enrollment.wake_at = FAILED, None
                enrollment.ended_at, enrollment.reason = at.isoformat(), f"could not go on: {reason}"
                if enrollment.id in self.active[enrollment.contact]:
                    self.active[enrollment.contact].remove(enrollment.id)
            self._record([LogEntry(at, enrollment.contact, enrollment.workflow, enrollment.version,
                                   enrollment.position or "", "failed", f"could not go on: {reason}")])
        elif kind == "event":
            event = payload[1]
            self._record([LogEntry(at, event.contact, "-", 0, "event", "failed", f"event {event.name}: {reason}")])
        elif kind in ("due", "inactive"):
            workflow = self.registry.get(payload[1])
            self._record([LogEntry(at, payload[2], payload[1], workflow.version if workflow else 0, "trigger",
                                   "failed", f"{kind} trigger: {reason}")])

    def _on_event(self, event: Event) -> None:
        contact = self.contacts[event.contact]
        self._remember(contact, event)
        for enrollment_id in list(self.active[contact.id]):
            enrollment = self.enrollments.get(enrollment_id)
            workflow = self._workflow_of(enrollment) if enrollment is not None else None
            if enrollment is None or workflow is None:
                continue  # over a store: an enrollment that does not read back, a version that does not load
            self._handle(workflow, self.engine.deliver(workflow, enrollment, contact, event))
        for workflow in self.workflows:
            trigger = workflow.trigger
            if trigger.kind == "event" and trigger.value == event.name:
                self._try_enroll(workflow, contact, event.at, event, event.name)
            elif trigger.kind == "inactivity" and trigger.value["event"] == event.name:
                self._schedule_inactivity(workflow, contact, event.at)
        self._recheck_segments(contact, event.at)

    def _recheck_segments(self, contact: ContactState, at: datetime) -> None:
        for workflow in self.workflows:
            if workflow.trigger.kind == "segment":
                self._check_segment(workflow, contact, at)

    def _check_segment(self, workflow: Workflow, contact: ContactState, at: datetime) -> None:
        source = self.project.segments.get(workflow.trigger.value)
        expression = source.source if source is not None else workflow.trigger.value
        scope = self.engine.scope(workflow, contact, at, at, {}, None)
        try:
            matches = bool(scope.evaluate(expression))
        except Exception as error:  # noqa: BLE001 - any evaluation error is the contact's failure, not ours
            self._record([LogEntry(at, contact.id, workflow.id, workflow.version, "trigger", "failed",
                                   f"segment {workflow.trigger.value}: {type(error).__name__}: {error}")])
            return
        key = (workflow.id, contact.id)
        before = self.segment_state.get(key, False)
        self.segment_state[key] = matches
        if matches and not before:
            self._try_enroll(workflow, contact, at, None, f"entered segment {workflow.trigger.value}")

    def _try_enroll(self, workflow: Workflow, contact: ContactState, at: datetime, event: Event | None,
                    why: str) -> None:
        try:
            admitted, reason = self.engine.admits(workflow, contact, at, event)
        except Exception as error:  # noqa: BLE001 - an expression that fails for this contact
            self._record([LogEntry(at, contact.id, workflow.id, workflow.version, "trigger", "failed",
                                   f"entry condition: {type(error).__name__}: {error}")])
            return
        if not admitted:
            if reason:
                self._record([LogEntry(at, contact.id, workflow.id, workflow.version, "trigger", "skip", reason)])
            return
        previous = self.history[(workflow.id, contact.id)]
        refusal = reentry_refusal(workflow, previous, at)
        if refusal:
            self._record([LogEntry(at, contact.id, workflow.id, workflow.version, "trigger", "skip", refusal)])
            return
        enrollment_id = self._new_enrollment_id(workflow, contact, previous)
        outcome = self.engine.enroll(workflow, contact, at, event, enrollment_id, why)
        enrollment = outcome.enrollment
        self.enrollments[enrollment.id] = enrollment
        previous.append(enrollment)
        self.active[contact.id].append(enrollment.id)
        self._handle(workflow, outcome)

    def _handle(self, workflow: Workflow, outcome: Outcome) -> None:
        """Make an outcome real in memory: render, record, answer pending steps, schedule the wake-up."""
        enrollment = outcome.enrollment
        contact = self.contacts[enrollment.contact]
        for effect in outcome.effects:
            if effect.kind == "send":
                failure = self._deliver_message(workflow, enrollment, contact, effect)
                if failure is not None:  # the message never went: no `send` in the timeline, no cap slot used
                    outcome.log = [entry for entry in outcome.log if not (
                        entry.kind == "send" and entry.at == effect.at and entry.step == effect.step)]
                    if contact.messages and contact.messages[-1].at == effect.at:
                        contact.messages.pop()
                    self._record(outcome.log)
                    self._handle(workflow, failure)
                    return
        self._record(outcome.log)
        changed: list[str] = []
        previous: dict[str, Any] = {}
        changed_at = None
        sent_at = None
        for effect in outcome.effects:
            if effect.kind == "send":
                sent_at = effect.at
            elif effect.kind in ("update", "score", "lists"):
                changed.extend(_changed_fields(effect))
                for name, value in effect.data.get("previous", {}).items():
                    previous.setdefault(name, value)
                changed_at = effect.at
            elif effect.kind == "start":
                target = self.registry.get(effect.data["workflow"])
                if target is not None:
                    self._try_enroll(target, contact, effect.at, None, f"started by {workflow.id}")
        if changed and changed_at is not None:  # as in the store: a change made by a step is a contact_updated event
            self._emit(Event(contact.id, "contact_updated", changed_at, {
                "changed": sorted(set(changed)), "previous": previous}))
        if enrollment.state == PENDING and enrollment.pending:
            self._answer_pending(workflow, enrollment, contact)
            return
        if enrollment.ended:
            if enrollment.id in self.active[contact.id]:
                self.active[contact.id].remove(enrollment.id)
        elif enrollment.wake_at:
            self._push(datetime.fromisoformat(enrollment.wake_at), _WAKE, ("wake", enrollment.id, enrollment.wake_at))
        elif sent_at is not None and enrollment.state == "active":
            # the engine pauses after each send so that it is rendered first; now go on
            self._handle(workflow, self.engine.advance(workflow, enrollment, contact, sent_at))

    # --- what a driver over a real store does differently (mauto/runner.py overrides these) ----------------

    def _new_enrollment_id(self, workflow: Workflow, contact: ContactState, previous: list[Enrollment]) -> str:
        return f"{workflow.id}:{contact.id}:{next(self.ids)}"

    def _remember(self, contact: ContactState, event: Event) -> None:
        contact.events.append(event)  # events come in time order here

    def _emit(self, event: Event) -> None:
        """An event a step caused (contact_updated): processed in its turn, like any other."""
        self._push(event.at, _EVENT, ("event", event))

    def _answer_pending(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState) -> None:
        """Answer a coupon or webhook step at once: from the sample pools and the sample webhook answers."""
        pending = enrollment.pending
        if pending is None:  # called only for an enrollment waiting on an answer
            return
        at = datetime.fromisoformat(pending["at"])
        if pending["kind"] == "coupon":
            codes = self.coupons.get(pending["pool"], deque())
            answer = codes.popleft() if codes else None
        else:
            answer = self.samples.webhooks.get(pending["request"]["url"], {})
        self._handle(workflow, self.engine.resume(workflow, enrollment, contact, answer, at))

    def _deliver_message(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState,
                         effect) -> Outcome | None:
        """Render the message a send asks for; a template that fails fails the enrollment (its Outcome)."""
        try:
            message = self.renderer.render(effect, contact, self.engine.settings.contact_fields)
        except MautoError as error:
            return self.engine.fail(workflow, enrollment, effect.at, f"template {effect.data['template']}: {error}",
                                    effect.data.get("path"))
        self._rendered(workflow, enrollment, contact, message)
        return None

    def _rendered(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState,
                  message: RenderedMessage) -> None:
        """A message rendered for a send: kept for the result here (the daemon queues it in the outbox)."""
        if self.keep_timeline and (self.contact_filter is None or contact.id == self.contact_filter):
            self.messages.append(message)  # rendered for everyone (a failure counts), kept as the timeline is
        if self.on_message is not None:
            self.on_message(message)

    def _record(self, entries: list[LogEntry]) -> None:
        for entry in entries:
            funnel = self.funnels.get(entry.workflow)
            if funnel is not None and (self.contact_filter is None or entry.contact == self.contact_filter):
                _count(funnel, entry, self.reached)
            if self.keep_timeline and (self.contact_filter is None or entry.contact == self.contact_filter):
                self.timeline.append(entry)


def reentry_refusal(workflow: Workflow, previous: list[Enrollment], at: datetime) -> str | None:
    """Why the contact may not enter again now (None: they may). A contact is never in a workflow twice at once."""
    if any(not enrollment.ended for enrollment in previous):
        return "already in this workflow"
    if not previous:
        return None
    reentry = workflow.reentry
    if reentry == "never":
        return "entered before (reentry: never)"
    if isinstance(reentry, timedelta):
        last = max(datetime.fromisoformat(enrollment.entered_at) for enrollment in previous)
        if at < last + reentry:
            return f"entered {last.isoformat()}; reentry after {workflow.document.data['reentry']['after']}"
    return None


def _changed_fields(effect) -> list[str]:
    if effect.kind == "score":
        return ["score"]
    if effect.kind == "lists":
        return ["lists"]
    data = effect.data
    fields = list(data.get("set", {})) + list(data.get("unset", []))
    if data.get("add_tags") or data.get("remove_tags"):
        fields.append("tags")
    return fields


def _count(funnel: Funnel, entry: LogEntry, reached: dict[str, set]) -> None:
    kind = entry.kind
    if entry.step:
        seen = reached[f"{entry.workflow}\x1f{entry.step}"]
        if entry.contact not in seen and kind not in ("postponed", "skip", "enter", "complete"):
            seen.add(entry.contact)
            funnel.steps[entry.step] += 1
            funnel.kinds.setdefault(entry.step, entry.channel or kind)
    if kind == "enter":
        funnel.entered += 1
    elif kind == "send":
        funnel.sent[entry.channel] += 1
    elif kind == "suppressed":
        funnel.suppressed += 1
    elif kind == "postponed":
        funnel.postponed += 1
    elif kind == "exit":
        if not entry.detail.startswith("goal "):
            funnel.exited += 1
    elif kind == "goal":
        funnel.converted += 1
    elif kind == "complete":
        funnel.completed += 1
    elif kind == "failed":
        funnel.failed += 1
    elif kind == "split":
        funnel.variants[f"{entry.extra.get('split')}:{entry.extra.get('variant')}"] += 1


# --- the use case ------------------------------------------------------------------------

DEFAULT_SAMPLES = {"contacts": "samples/contacts.yaml", "events": "samples/events.yaml",
                   "coupons": "samples/coupons.yaml", "webhooks": "samples/webhooks.yaml"}


def select_workflows(project: Project, targets: list[Path] | None,
                     now: datetime | None = None) -> tuple[list[Workflow], list[Workflow]]:
    """(the workflows to simulate, every workflow of the project). Refuses a project that lints with errors.

    `now` is the moment the lint checks dates against (`wait-date-past`): a simulation's start, so that its
    result does not depend on the day it runs.
    """
    from mauto.lint.runner import refuse_errors, workflow_files
    from mauto.workflow.loader import load
    from mauto.workflow.model import build

    refuse_errors(project, now or datetime.now().astimezone())
    files = workflow_files(project.workflows_dir)
    every = [build(load(path, project.display(path))) for path in files]
    if not targets:
        return every, every
    by_path = {Path(workflow.document.path).resolve() if Path(workflow.document.path).is_absolute()
               else (project.display_root / workflow.document.path).resolve(): workflow for workflow in every}
    by_id = {workflow.id: workflow for workflow in every}
    chosen: dict[str, Workflow] = {}
    for target in targets:
        if target.is_dir():
            found = [workflow for path, workflow in by_path.items() if target.resolve() in path.parents]
        elif target.is_file():
            found = [by_path[target.resolve()]] if target.resolve() in by_path else []
            if not found:
                raise MautoError(f"{target}: not a workflow of this project (workflows live in "
                                 f"{project.display(project.workflows_dir)}/)")
        elif str(target) in by_id:
            found = [by_id[str(target)]]
        else:
            raise MautoError(f"{target}: no such workflow file, folder or workflow id")
        for workflow in found:
            chosen[workflow.id] = workflow
    return list(chosen.values()), every


def simulate(project: Project, targets: list[Path] | None, start: datetime, horizon: timedelta,
             contacts: Path | None = None, events: Path | None = None, coupons: Path | None = None,
             webhooks: Path | None = None, contact: str | None = None) -> SimulationResult:
    """Run the chosen workflows (default: all) on the sample data from `start` for `horizon`."""
    root = project.root

    def pick(given: Path | None, name: str) -> Path | None:
        if given is not None:
            if not given.exists():
                raise MautoError(f"{given}: no such file")
            return given
        default = root / DEFAULT_SAMPLES[name]
        return default if default.exists() else None

    workflows, every = select_workflows(project, targets, start)
    contacts_path = pick(contacts, "contacts")
    if contacts_path is None:
        raise MautoError("no contacts file: pass --contacts FILE (YAML, JSON Lines or CSV) or create "
                         f"{project.display(root / DEFAULT_SAMPLES['contacts'])}")
    contact_states = load_contacts(contacts_path, project)
    known = {state.id for state in contact_states}
    if contact is not None and contact not in known:
        raise MautoError(f"--contact {contact}: no such contact in the contacts file")
    events_path = pick(events, "events")
    event_list = load_events(events_path, project, start, known) if events_path else []
    samples = Samples(contact_states, event_list, load_mapping(pick(coupons, "coupons"), "coupons"),
                      load_mapping(pick(webhooks, "webhooks"), "webhooks"))
    simulation = Simulation(project, workflows, samples, start, start + horizon, every, contact_filter=contact)
    return simulation.run()
