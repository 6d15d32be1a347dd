"""The ports: everything the shared loop (`mauto.driver.loop.Driver`) reads or changes outside itself.

Each is a small `typing.Protocol`. Two sets implement them: `mauto.driver.memory` (the simulation: dicts
and lists, answers from the samples) and `mauto.driver.sqlite` (the daemon's tick: the store, loaded on
first use, written in batches). A set must pass `tests/driver/test_contract.py`, which runs the same
cases against every set; the loop knows nothing else of them.

No port reads a clock: every moment is given by the loop, which has it from the item in hand.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from mauto.engine.records import ContactState, Event
from mauto.engine.state import Effect, Enrollment, LogEntry
from mauto.messages import RenderedMessage
from mauto.workflow.model import Workflow


class Contacts(Protocol):
    """The contacts: read by id, every one for the triggers that list them all, changes written back."""

    def get(self, contact_id: str) -> ContactState | None:
        """The contact (one object per id while it is loaded), or None: no such contact (erased)."""

    def ids(self) -> Iterable[str]:
        """Every contact's id (the schedule and segment triggers go through them all)."""

    def every(self) -> Iterator[ContactState]:
        """Every contact with its fields, to read a field of each: not necessarily the objects `get` gives, nor
        with their event history."""

    def every_near(self, spec: dict[str, Any], start: datetime, end: datetime) -> Iterator[ContactState]:
        """The contacts a `date` trigger (`spec`: field, every, offset) may come due for in [start, end), as
        `every` gives them: at least those, and every one whose field does not hold a date (the loop tells
        each such contact's failure); `every()` itself will do. Over a store, a query, not a read of each."""

    def matching(self, expression: str, at: datetime) -> Iterable[str] | None:
        """The ids of the contacts for which the segment `expression` may be true at `at`, as the loop would
        evaluate it over `get`'s contacts: at least every one it is true for, every one it fails on, and every
        contact whose state the port holds in memory (changed since it was read: the store may not have it
        yet). None: the port cannot tell, any contact may (the loop checks them all)."""

    def changed(self, contact: ContactState) -> None:
        """A step changed the contact's fields (update, score, lists): write them back."""

    def withdraw(self, contact: ContactState, channel: str) -> None:
        """An event withdrew the contact's consent on `channel` (an unsubscribe): `<channel>_consent` is false."""

    def suppress(self, contact: ContactState, channel: str, why: str) -> bool:
        """Put the contact's address for `channel` (`consent.ADDRESS_FIELD`: the email address, the phone number)
        on the suppression list (a hard bounce, a complaint, an unsubscribe); whether it was not there already."""


class Enrollments(Protocol):
    """The enrollments: by id, the ones of a contact not ended, a contact's history in a workflow."""

    def get(self, enrollment_id: str) -> Enrollment | None:
        """The enrollment (one object per id while loaded), or None: unknown, or its row does not read back."""

    def active(self, contact_id: str) -> list[str]:
        """The ids of the contact's enrollments that have not ended (a copy: the loop may change the port)."""

    def converting(self, contact_id: str, at: datetime) -> list[str]:
        """The ids of the contact's ended enrollments whose goal still counts at `at` (not converted, and `at` within
        the goal's `within`: `Enrollment.goal_until`), oldest first."""

    def history(self, workflow_id: str, contact_id: str) -> Sequence[Entry]:
        """The contact's enrollments in the workflow, oldest first, ended ones included or summed up (the
        reentry rule reads their entry times)."""

    def new_id(self, workflow: Workflow, contact: ContactState, previous: Sequence[Entry]) -> str:
        """An id for the contact's next enrollment in the workflow."""

    def add(self, enrollment: Enrollment) -> None:
        """A new enrollment."""

    def save(self, enrollment: Enrollment) -> None:
        """The enrollment's state changed (its step, its wake-up, its end)."""


class Events(Protocol):
    """The events: the contact's history the expressions read, events steps cause, events handled."""

    def remember(self, contact: ContactState, event: Event) -> None:
        """The event joins the contact's history, in time order (has_event, inactivity, wait_for read it)."""

    def emit(self, event: Event) -> None:
        """A step caused an event (contact_updated): kept (the loop queues it, to be handled in its turn)."""

    def handled(self, event: Event) -> None:
        """The loop has handled the event (told once it has): a later run must not handle it again."""

    def hold(self, event: Event, enrollment: Enrollment) -> None:
        """The event came for an enrollment of a paused workflow (`Workflows.paused`): kept for it, to be handed
        to it when the workflow is resumed (`release`), in the order the events came."""

    def release(self, event: Event, workflow_id: str) -> None:
        """A held event is being handed to the enrollments of `workflow_id` it was held for (the workflow was
        resumed): no longer held."""


class Outbox(Protocol):
    """What leaves the loop for the world: messages rendered for a send, tasks for a person."""

    def message(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState,
                message: RenderedMessage) -> Event | None:
        """A message rendered for a send step, to be sent (or kept, in a simulation). Returns its `email_sent`
        / `sms_sent` event when the provider's acceptance is known at once (a simulation: at the send); None
        when it comes later (the daemon's outbox records it when the provider accepts the message)."""

    def task(self, effect: Effect) -> None:
        """A task step's task."""


class Later(Enum):
    """An answer that comes later: the enrollment waits in `pending` until it does (a webhook's response)."""

    LATER = "later"


class Entry(Protocol):
    """What the loop reads of a contact's past enrollments in a workflow (the reentry rule; a trigger listed
    twice for one moment): an `Enrollment`, or what a port keeps of an ended one."""

    @property
    def entered_at(self) -> datetime: ...

    @property
    def cause(self) -> str | None: ...

    @property
    def ended(self) -> bool: ...


class Answers(Protocol):
    """Values a step waits for: a coupon code from a pool, a webhook's response."""

    def coupon(self, pool: str, contact_id: str, at: datetime, expires_at: datetime | None = None) -> str | None:
        """The next unused code of the pool, now the contact's (good until `expires_at`, when the step gives
        `valid_for`); None: the pool is empty."""

    def webhook(self, enrollment: Enrollment, request: dict[str, Any], at: datetime) -> Any:
        """The endpoint's answer (parsed JSON), or `Later.LATER`: the call is made outside the loop, and the answer
        resumes the enrollment when it comes."""


class Timers(Protocol):
    """What the inactivity and segment triggers remember between items (and, over a store, between runs):
    inactivity timers, segment membership, whether a trigger's first listing was done."""

    def inactive_since(self, workflow_id: str, contact_id: str) -> datetime | None:
        """The moment of the last event an inactivity timer counts from, None when none is set."""

    def set_inactive(self, workflow_id: str, contact_id: str, last_at: datetime, due: datetime) -> None:
        """An inactivity timer, counting from the event at `last_at`, due at `due`."""

    def fired(self, workflow_id: str, contact_id: str) -> None:
        """The timer came due and was handled."""

    def in_segment(self, workflow_id: str, contact_id: str) -> bool:
        """Whether the contact was in the workflow's segment when last checked."""

    def set_segment(self, workflow_id: str, contact_id: str, inside: bool) -> None:
        """The contact entered or left the segment."""

    def members(self, workflow_id: str) -> Iterable[str]:
        """The contacts in the workflow's segment when last checked (`in_segment` true)."""

    def begun(self, workflow_id: str) -> bool:
        """Whether the trigger's first listing over every contact was done (by this run or an earlier one)."""

    def started(self, workflow_id: str) -> None:
        """The trigger's first listing over every contact is done (inactivity timers set, segments checked):
        a later run does not list them again."""


class Workflows(Protocol):
    """The workflows: those taking contacts, and the version an enrollment runs."""

    def taking(self) -> list[Workflow]:
        """The workflows whose trigger enrolls contacts, in a fixed order."""

    def since(self, workflow_id: str) -> datetime | None:
        """From when the workflow takes contacts from events (its deploy); None: from any moment."""

    def named(self, workflow_id: str) -> Workflow | None:
        """The running version of a workflow (a trigger's, a `start` step's target), None if not running."""

    def of(self, enrollment: Enrollment) -> Workflow | None:
        """The version the enrollment runs, None when it cannot be loaded (the enrollment waits)."""

    def paused(self, workflow_id: str) -> bool:
        """Whether the workflow is paused (`mauto pause`): it takes no one, and the events that come for its
        enrollments are held (`Events.hold`) rather than handed to them. A simulation pauses nothing."""


class Journal(Protocol):
    """The step log, and what the loop tells of its progress."""

    def record(self, entries: list[LogEntry]) -> None:
        """Log entries, in order."""

    def woke(self, enrollment: Enrollment) -> None:
        """An enrollment's wake-up is about to be handled."""


class Failures(Protocol):
    """What could not be done, and why."""

    def trigger(self, error: Exception, workflow_id: str, contact_id: str | None, at: datetime) -> None:
        """Listing a trigger's due moments failed for a contact (its data): said, not raised."""


@dataclass
class Ports:
    """One set of ports, as a use case wires them for the loop."""

    contacts: Contacts
    enrollments: Enrollments
    events: Events
    outbox: Outbox
    answers: Answers
    timers: Timers
    workflows: Workflows
    journal: Journal
    failures: Failures
