"""The ports in memory: what `mauto simulate` and `mauto test` run the loop on.

Contacts, enrollments and timers in dicts; coupons and webhook answers from the samples; messages, tasks and
the step log handed to the simulation (which keeps what it is asked to keep). What a finished run holds does
not grow with its horizon: with `keep_ended=False`, an enrollment that ends is forgotten but for its entry
time (all the reentry rule reads), and a contact's sent messages older than the longest frequency-cap window
are dropped (all the caps read), and events whose name appears nowhere in the project (no workflow, segment
or template could ask for them) are not added to a contact's history.

Nothing is paused in a simulation (`MemoryWorkflows.paused_ids` is empty but in the ports' contract tests), so
no event is held there. The enrollment ids stay readable (`welcome:c01:1`): a simulation has no store and
nothing to erase, and its timelines and tests show them; the store's are opaque (`mauto.driver.sqlite`).
"""
from __future__ import annotations

import itertools
from bisect import insort
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mauto.consent import ADDRESS_FIELD
from mauto.driver.ports import Entry, Ports
from mauto.engine.records import ContactState, Event
from mauto.engine.state import Effect, Enrollment, LogEntry
from mauto.messages import RenderedMessage
from mauto.workflow.model import Workflow


class MemoryContacts:
    def __init__(self, contacts: Iterable[ContactState]) -> None:
        self.by_id = {contact.id: contact for contact in contacts}

    def get(self, contact_id: str) -> ContactState | None:
        return self.by_id.get(contact_id)

    def ids(self) -> Iterable[str]:
        return self.by_id.keys()

    def every(self) -> Iterator[ContactState]:
        return iter(self.by_id.values())

    def every_near(self, spec: dict[str, Any], start: datetime, end: datetime) -> Iterator[ContactState]:
        return self.every()  # a simulation's contacts are in memory: reading each costs nothing more

    def matching(self, expression: str, at: datetime) -> Iterable[str] | None:
        return None  # the objects are the contacts: the loop checks each

    def changed(self, contact: ContactState) -> None:
        pass  # the object is the contact

    def withdraw(self, contact: ContactState, channel: str) -> None:
        pass  # the loop set the field on the object

    def suppress(self, contact: ContactState, channel: str, why: str) -> bool:
        return bool(contact.fields.get(ADDRESS_FIELD[channel])) and channel not in contact.suppressed


class Entered:
    """What is left of a contact's ended enrollments in a workflow when they are not kept: the latest entry
    time and why it was made, which is all the rules read (reentry; a trigger listed twice for one moment)."""

    __slots__ = ("entered_at", "cause")
    ended = True

    def __init__(self, entered_at: datetime, cause: str | None) -> None:
        self.entered_at = entered_at
        self.cause = cause


class MemoryEnrollments:
    def __init__(self, keep_ended: bool = True) -> None:
        self.keep_ended = keep_ended
        self.by_id: dict[str, Enrollment] = {}
        self.in_flight: dict[str, list[str]] = defaultdict(list)  # contact -> enrollment ids not ended
        self.by_contact: dict[tuple[str, str], list[Enrollment | Entered]] = defaultdict(list)  # all, or summed
        # Ended enrollments whose goal still counts (`goal_until`), kept even when ended ones are not.
        self.open_goals: dict[str, list[Enrollment]] = defaultdict(list)  # contact -> its ones
        self.goal_by_id: dict[str, Enrollment] = {}
        self.numbers = itertools.count(1)

    def get(self, enrollment_id: str) -> Enrollment | None:
        return self.by_id.get(enrollment_id) or self.goal_by_id.get(enrollment_id)

    def active(self, contact_id: str) -> list[str]:
        return list(self.in_flight.get(contact_id, ()))

    def converting(self, contact_id: str, at: datetime) -> list[str]:
        held = self.open_goals.get(contact_id)
        if not held:
            return []
        kept = [e for e in held if not e.converted and e.goal_until is not None and e.goal_until >= at]
        for gone in held:
            if gone not in kept:
                self.goal_by_id.pop(gone.id, None)
        held[:] = kept
        return [e.id for e in held]

    def history(self, workflow_id: str, contact_id: str) -> Sequence[Entry]:
        return self.by_contact.get((workflow_id, contact_id), [])

    def new_id(self, workflow: Workflow, contact: ContactState, previous: Sequence[Entry]) -> str:
        # Readable: nothing outlives the run (the store's ids are opaque, for erasure's sake)
        return f"{workflow.id}:{contact.id}:{next(self.numbers)}"

    def add(self, enrollment: Enrollment) -> None:
        self.by_id[enrollment.id] = enrollment
        self.by_contact[(enrollment.workflow, enrollment.contact)].append(enrollment)
        self.in_flight[enrollment.contact].append(enrollment.id)

    def save(self, enrollment: Enrollment) -> None:
        if not enrollment.ended or enrollment.id not in self.by_id:
            return
        if enrollment.goal_until is not None and enrollment.id not in self.goal_by_id:
            self.open_goals[enrollment.contact].append(enrollment)
            self.goal_by_id[enrollment.id] = enrollment
        ids = self.in_flight.get(enrollment.contact)
        if ids is not None and enrollment.id in ids:
            ids.remove(enrollment.id)
            if not ids:
                del self.in_flight[enrollment.contact]
        if self.keep_ended:
            return
        del self.by_id[enrollment.id]
        # Of the ended ones, the latest entry is all the rules read (reentry `never` or `after`; an entry at
        # this very moment): one `Entered` per (workflow, contact), however many times they came back.
        history = self.by_contact[(enrollment.workflow, enrollment.contact)]
        history.remove(enrollment)
        latest = Entered(enrollment.entered_at, enrollment.cause)
        if history and isinstance(history[0], Entered):
            if history[0].entered_at > latest.entered_at:
                latest = history[0]
            history[0] = latest
        else:
            history.insert(0, latest)

    def every(self) -> list[Enrollment]:
        """The enrollments held (every one when ended ones are kept), in the order they began."""
        return list(self.by_id.values())


class MemoryEvents:
    """`read(name)`: whether anything may read events of that name from a contact's history; those nothing
    reads are not kept (a year of `contact_updated` that no workflow looks at)."""

    def __init__(self, read: Callable[[str], bool] | None = None) -> None:
        self.read = read
        self.held: list[tuple[Event, str, str]] = []  # (event, workflow, enrollment): for a paused workflow

    def remember(self, contact: ContactState, event: Event) -> None:
        if self.read is not None and not self.read(event.name):
            return
        if not contact.events or contact.events[-1].at <= event.at:
            contact.events.append(event)  # the usual case: events come in time order
        else:
            insort(contact.events, event, key=lambda item: item.at)

    def emit(self, event: Event) -> None:
        pass  # the loop queues it; handled, it joins the contact's history

    def handled(self, event: Event) -> None:
        pass

    def hold(self, event: Event, enrollment: Enrollment) -> None:
        self.held.append((event, enrollment.workflow, enrollment.id))

    def release(self, event: Event, workflow_id: str) -> None:
        self.held = [item for item in self.held if not (item[0] is event and item[1] == workflow_id)]


class MemoryOutbox:
    """Messages and tasks handed to `on_message` / `on_task` (the simulation keeps them, or counts them).

    `window` is the longest frequency-cap window of the run: a contact's sent messages older than it, seen
    from the message just rendered, are dropped (the caps never look further back)."""

    def __init__(self, on_message: Callable[[Workflow, Enrollment, ContactState, RenderedMessage], None],
                 on_task: Callable[[Effect], None] | None = None, window: timedelta | None = None,
                 sent: frozenset[str] = frozenset({"email", "sms"})) -> None:
        self.on_message = on_message
        self.on_task = on_task
        self.window = window
        self.sent = sent  # the channels whose `<channel>_sent` events anything may read

    def message(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState,
                message: RenderedMessage) -> Event | None:
        """Kept; the provider of a simulation accepts every message at once: its `<channel>_sent` event, at
        the send, as the daemon records it when its provider accepts (when anything may read it)."""
        self.on_message(workflow, enrollment, contact, message)
        if self.window is not None:
            sent = contact.messages
            horizon = message.at - self.window
            if sent and sent[0].at < horizon:
                keep = next((index for index, item in enumerate(sent) if item.at >= horizon), len(sent))
                del sent[:keep]
        if message.channel not in self.sent:
            return None
        return Event(contact.id, f"{message.channel}_sent", message.at, {
            "workflow": message.workflow, "step": message.step, "template": message.template, "message": message.ref})

    def task(self, effect: Effect) -> None:
        if self.on_task is not None:
            self.on_task(effect)


class MemoryAnswers:
    """Coupon codes from the sample pools (each given once), webhook answers from the sample answers by URL."""

    def __init__(self, coupons: dict[str, list[str]], webhooks: dict[str, Any]) -> None:
        self.coupons = {pool: deque(codes) for pool, codes in coupons.items()}
        self.webhooks = webhooks

    def coupon(self, pool: str, contact_id: str, at: datetime, expires_at: datetime | None = None) -> str | None:
        codes = self.coupons.get(pool)  # the expiry is in the enrollment's vars already: a simulation keeps no pool
        return codes.popleft() if codes else None

    def webhook(self, enrollment: Enrollment, request: dict[str, Any], at: datetime) -> Any:
        return self.webhooks.get(request["url"], {})


class MemoryTimers:
    def __init__(self) -> None:
        self.inactive: dict[tuple[str, str], datetime] = {}
        self.segment: dict[tuple[str, str], bool] = {}
        self.listed: set[str] = set()

    def inactive_since(self, workflow_id: str, contact_id: str) -> datetime | None:
        return self.inactive.get((workflow_id, contact_id))

    def set_inactive(self, workflow_id: str, contact_id: str, last_at: datetime, due: datetime) -> None:
        self.inactive[(workflow_id, contact_id)] = last_at

    def fired(self, workflow_id: str, contact_id: str) -> None:
        pass  # kept: the same last event never starts a second timer

    def in_segment(self, workflow_id: str, contact_id: str) -> bool:
        return self.segment.get((workflow_id, contact_id), False)

    def set_segment(self, workflow_id: str, contact_id: str, inside: bool) -> None:
        self.segment[(workflow_id, contact_id)] = inside

    def members(self, workflow_id: str) -> Iterable[str]:
        return [contact for (workflow, contact), inside in self.segment.items() if workflow == workflow_id and inside]

    def begun(self, workflow_id: str) -> bool:
        return workflow_id in self.listed

    def started(self, workflow_id: str) -> None:
        self.listed.add(workflow_id)


class MemoryWorkflows:
    """The workflows run (`taking`) and every workflow of the project (what a `start` step may name)."""

    def __init__(self, taking: list[Workflow], every: Iterable[Workflow] = (), paused: Iterable[str] = ()) -> None:
        self.running = list(taking)
        self.registry = {workflow.id: workflow for workflow in [*every, *taking]}
        self.paused_ids = set(paused)  # a simulation pauses nothing; the ports' contract tests do

    def taking(self) -> list[Workflow]:
        if self.paused_ids:  # a paused workflow takes no one
            return [workflow for workflow in self.running if workflow.id not in self.paused_ids]
        return self.running

    def since(self, workflow_id: str) -> datetime | None:
        return None

    def named(self, workflow_id: str) -> Workflow | None:
        return None if workflow_id in self.paused_ids else self.registry.get(workflow_id)

    def of(self, enrollment: Enrollment) -> Workflow | None:
        return self.registry.get(enrollment.workflow)

    def paused(self, workflow_id: str) -> bool:
        return workflow_id in self.paused_ids


class MemoryJournal:
    """The step log handed to `sink` (the simulation counts its funnels and keeps its timeline)."""

    def __init__(self, sink: Callable[[list[LogEntry]], None]) -> None:
        self.sink = sink

    def record(self, entries: list[LogEntry]) -> None:
        if entries:
            self.sink(entries)

    def woke(self, enrollment: Enrollment) -> None:
        pass


class MemoryFailures:
    """A trigger that cannot be listed for a contact: a `failed` entry on the contact's timeline."""

    def __init__(self, journal: MemoryJournal, version: Callable[[str], int]) -> None:
        self.journal = journal
        self.version = version

    def trigger(self, error: Exception, workflow_id: str, contact_id: str | None, at: datetime) -> None:
        self.journal.record([LogEntry(at, contact_id or "-", workflow_id, self.version(workflow_id), "trigger",
                                      "failed", f"listing the trigger: {type(error).__name__}: {error}")])


@dataclass
class MemoryPorts:
    """One set of ports in memory, as the simulation holds them (their dicts within reach, for its result)."""

    contacts: MemoryContacts
    enrollments: MemoryEnrollments
    events: MemoryEvents
    outbox: MemoryOutbox
    answers: MemoryAnswers
    timers: MemoryTimers
    workflows: MemoryWorkflows
    journal: MemoryJournal
    failures: MemoryFailures

    def ports(self) -> Ports:
        return Ports(self.contacts, self.enrollments, self.events, self.outbox, self.answers, self.timers,
                     self.workflows, self.journal, self.failures)


def memory_ports(contacts: Iterable[ContactState], taking: list[Workflow], every: Iterable[Workflow],
                 coupons: dict[str, list[str]], webhooks: dict[str, Any],
                 on_entries: Callable[[list[LogEntry]], None],
                 on_message: Callable[[Workflow, Enrollment, ContactState, RenderedMessage], None],
                 keep_ended: bool = True, window: timedelta | None = None,
                 read: Callable[[str], bool] | None = None,
                 sent: frozenset[str] = frozenset({"email", "sms"})) -> MemoryPorts:
    """A set of memory ports over the given contacts, workflows and sample answers."""
    journal = MemoryJournal(on_entries)
    workflows = MemoryWorkflows(taking, every)

    def version(workflow_id: str) -> int:
        workflow = workflows.named(workflow_id)
        return workflow.version if workflow is not None else 0

    return MemoryPorts(MemoryContacts(contacts), MemoryEnrollments(keep_ended), MemoryEvents(read),
                       MemoryOutbox(on_message, window=window, sent=sent), MemoryAnswers(coupons, webhooks),
                       MemoryTimers(),
                       workflows, journal, MemoryFailures(journal, version))
