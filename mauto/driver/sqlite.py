"""The ports over the SQLite store: what the daemon's tick (`mauto.daemon.tick`) runs the loop on.

Rows are loaded on first use and kept (one object per id) until `forget`, which the tick calls between
batches so that memory stays per batch however many items are due. Writes wait in the `Batch` until `flush`,
which the tick calls inside the batch's transaction: the enrollments, contact changes, messages, tasks, the
step log and the events marked handled go in together. A few writes are made at once, inside the same
transaction (an inactivity timer, a segment's membership, consent withdrawn, a coupon taken, a webhook call
queued, an event a step caused), so that the rest of the batch reads them back.

Enrollment ids are opaque (`promo:5f0c…`, `enrollment_id`): the idempotency keys of messages, webhook calls and
tasks are made from them, and a contact's id in them would outlive its erasure.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from mauto.consent import ADDRESS_FIELD
from mauto.driver.ports import Entry, Later, Ports
from mauto.engine.records import ContactState, Event
from mauto.engine.state import Effect, Enrollment, LogEntry
from mauto.errors import MautoError
from mauto.messages import RenderedMessage
from mauto.store import runtime
from mauto.store.audience_sql import audience_ids, date_trigger_contacts, segment_members
from mauto.store.coupons import take_coupon_in
from mauto.store.runtime import failure_reason as reason
from mauto.store.sqlite import Store, stamp, store_failure
from mauto.workflow.loader import parse
from mauto.workflow.model import Workflow, build

# Steps whose detail is made of rendered templates or set values (a task's title, a field's new value, a
# webhook's URL): the action log leaves it out.
_RENDERED_DETAIL = frozenset({"task", "update", "webhook", "coupon"})
Log = Callable[[str, dict[str, Any]], None]


class Tally(Protocol):
    """The counts a run reports (the tick's report has them)."""

    enrolled: int
    advanced: int
    events: int
    queued: int
    failed: int
    errors: int

    def problem(self, kind: str, reason: str, **where: Any) -> None: ...


class Batch:
    """What the current batch has changed and not yet written, and the connection it writes with."""

    def __init__(self, store: Store, now: datetime, tally: Tally, log: Log) -> None:
        self.store, self.db = store, store.db
        self.at = stamp(now)
        self.tally, self.log = tally, log
        self.task_handoff: str | None = None  # 'pending' when mauto.yaml hands tasks over (set by the tick)
        self.release: int | None = None  # the release the batch's messages are rendered from (set by the tick)
        self.reset()

    def reset(self) -> None:
        self.enrollments: dict[str, Enrollment] = {}
        self.contacts: dict[str, ContactState] = {}
        self.messages: list[dict[str, Any]] = []
        self.tasks: list[dict[str, Any]] = []
        self.entries: list[LogEntry] = []
        self.handled: list[int] = []
        self.held: list[tuple[str, int, str]] = []  # (workflow, event seq, enrollment) held while it is paused
        self.released: list[tuple[str, int]] = []  # (workflow, event seq) handed over on resume

    def flush(self) -> None:
        """Write what the batch changed (inside the caller's transaction), then start afresh."""
        db = self.db
        runtime.save_enrollments(db, list(self.enrollments.values()))
        for contact in self.contacts.values():
            runtime.save_contact(db, contact, self.at)
        runtime.insert_messages(db, self.messages)
        runtime.insert_tasks(db, self.tasks)
        runtime.insert_log(db, self.entries)
        runtime.mark_processed(db, self.handled, self.at)
        runtime.hold_events(db, self.held, self.at)
        runtime.release_held(db, self.released)
        self.tally.queued += len(self.messages)
        for message in self.messages:
            self.log("queued", {"key": message["key"], "contact": message["contact"], "channel": message["channel"],
                                "template": message["template"], "at": message["created_at"]})
        self.reset()


class SqliteContacts:
    def __init__(self, batch: Batch, fields: dict[str, Any], zone: str) -> None:
        self.batch, self.fields, self.zone = batch, fields, zone
        self.loaded: dict[str, ContactState | None] = {}

    def get(self, contact_id: str) -> ContactState | None:
        try:
            return self.loaded[contact_id]
        except KeyError:
            batch = self.batch
            contact = self.loaded[contact_id] = runtime.load_contact(batch.db, contact_id, self.fields, self.zone,
                                                                     batch.store.phone_region)
            return contact

    def ids(self) -> Iterable[str]:
        return runtime.contact_ids(self.batch.db)

    def every(self) -> Iterator[ContactState]:
        return runtime.contact_rows(self.batch.db, self.fields, self.zone)

    def every_near(self, spec: dict[str, Any], start: datetime, end: datetime) -> Iterator[ContactState]:
        batch = self.batch
        return date_trigger_contacts(batch.db, spec, self.fields, self.zone, start, end, batch.store.dialect)

    def matching(self, expression: str, at: datetime) -> Iterable[str] | None:
        batch = self.batch
        # The store's contacts with the events a tick handled (as `get` reads them); and the ones loaded, whose
        # fields and events in memory may be ahead of the store until the batch is written. No zone: the loop
        # checks the segment in the workflow's settings.timezone, else each contact's own (Engine.zone_name), so
        # a part such as `now|date('%A')` may differ from contact to contact and is left to that check.
        found = audience_ids(batch.db, expression, self.fields, None, at, batch.store.dialect,
                             processed_events_only=True)
        if found is None:
            return None
        return [*found, *(contact_id for contact_id, contact in self.loaded.items() if contact is not None)]

    def changed(self, contact: ContactState) -> None:
        self.batch.contacts[contact.id] = contact

    def withdraw(self, contact: ContactState, channel: str) -> None:
        runtime.withdraw_consent(self.batch.db, contact.id, channel, self.batch.at)

    def suppress(self, contact: ContactState, channel: str, why: str) -> bool:
        address = contact.fields.get(ADDRESS_FIELD[channel])
        if not (address and self.batch.store.suppress(address, channel, why)):
            return False
        self.batch.log("suppressed", {"contact": contact.id, "channel": channel, "why": why})
        return True

    def forget(self) -> None:
        self.loaded.clear()


class SqliteEnrollments:
    """`unreadable(enrollment_id, error)` is told of an enrollment whose row does not read back (and fails it)."""

    def __init__(self, batch: Batch, unreadable: Callable[[str, BaseException], None]) -> None:
        self.batch, self.unreadable = batch, unreadable
        self.loaded: dict[str, Enrollment | None] = {}
        self.histories: dict[tuple[str, str], list[Enrollment]] = {}
        self.in_flight: dict[str, list[str]] = {}
        self.goals_opened: dict[str, list[str]] = {}  # contact -> enrollments that ended with `goal_until`, unwritten
        self.key: str | None = None  # the store's key the ids are made with, read when first needed

    def get(self, enrollment_id: str) -> Enrollment | None:
        try:
            return self.loaded[enrollment_id]
        except KeyError:
            pass
        try:
            enrollment = runtime.get_enrollment(self.batch.db, enrollment_id)
        except Exception as error:  # noqa: BLE001 - this enrollment's problem, not the tick's
            if store_failure(error):
                raise
            self.loaded[enrollment_id] = None
            self.unreadable(enrollment_id, error)
            return None
        self.loaded[enrollment_id] = enrollment
        return enrollment

    def _enrollment(self, enrollment_id: str) -> Enrollment:
        enrollment = self.get(enrollment_id)
        if enrollment is None:
            enrollment = runtime.get_enrollment(self.batch.db, enrollment_id)
            if enrollment is None:  # its id was just listed in the same transaction
                raise LookupError(f"enrollment {enrollment_id} is not in the store")
            self.loaded[enrollment_id] = enrollment
        return enrollment

    def _active(self, contact_id: str) -> list[str]:
        ids = self.in_flight.get(contact_id)
        if ids is None:
            ids = self.in_flight[contact_id] = runtime.enrollment_ids(self.batch.db, contact_id, in_flight=True)
        return ids

    def active(self, contact_id: str) -> list[str]:
        return list(self._active(contact_id))

    def converting(self, contact_id: str, at: datetime) -> list[str]:
        # The store's, and those ended in this batch (written with it): the loaded object says what holds now.
        ids = runtime.open_goal_ids(self.batch.db, contact_id, at)
        ids += [enrollment_id for enrollment_id in self.goals_opened.get(contact_id, ()) if enrollment_id not in ids]
        found = []
        for enrollment_id in ids:
            enrollment = self.get(enrollment_id)
            if (enrollment is not None and enrollment.ended and not enrollment.converted
                    and enrollment.goal_until is not None and enrollment.goal_until >= at):
                found.append(enrollment)
        return [e.id for e in sorted(found, key=lambda e: (e.entered_at, e.id))]

    def history(self, workflow_id: str, contact_id: str) -> list[Enrollment]:
        key = (workflow_id, contact_id)
        history = self.histories.get(key)
        if history is None:
            history = self.histories[key] = [
                self._enrollment(enrollment_id)
                for enrollment_id in runtime.enrollment_ids(self.batch.db, contact_id, workflow_id)]
        return history

    def new_id(self, workflow: Workflow, contact: ContactState, previous: Sequence[Entry]) -> str:
        # Deterministic: a batch re-run after a crash makes the same ids, hence the same message keys.
        if self.key is None:
            self.key = runtime.id_key(self.batch.db)
        return enrollment_id(self.key, workflow.id, contact.id, len(previous) + 1)

    def add(self, enrollment: Enrollment) -> None:
        self.history(enrollment.workflow, enrollment.contact).append(enrollment)
        self._active(enrollment.contact).append(enrollment.id)
        self.loaded[enrollment.id] = enrollment
        self.batch.enrollments[enrollment.id] = enrollment

    def save(self, enrollment: Enrollment) -> None:
        self.batch.enrollments[enrollment.id] = enrollment
        if enrollment.ended:
            # Loaded first if need be: until the batch is written the store still lists it in flight.
            ids = self._active(enrollment.contact)
            if enrollment.id in ids:
                ids.remove(enrollment.id)
            if enrollment.goal_until is not None:
                self.goals_opened.setdefault(enrollment.contact, []).append(enrollment.id)

    def keep(self, enrollment: Enrollment) -> Enrollment:
        """An enrollment read with others (the due ones): the one already loaded wins."""
        return self.loaded.setdefault(enrollment.id, enrollment) or enrollment

    def put(self, enrollment: Enrollment) -> None:
        """An enrollment just read back from the store (a webhook's answer): it replaces the one loaded."""
        self.loaded[enrollment.id] = enrollment

    def drop(self, enrollment_id: str) -> None:
        self.loaded.pop(enrollment_id, None)

    def forget(self) -> None:
        self.loaded.clear()
        self.histories.clear()
        self.in_flight.clear()
        self.goals_opened.clear()
        self.key = None  # read again: one made by a batch that was rolled back is gone with it


class SqliteEvents:
    """Events handled are marked processed with the batch; `seq` maps each event object to its row."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.seq: dict[int, int] = {}  # id(event) -> its row's seq
        self.emitted: list[int] | None = None  # id() of the events emitted by the item in hand (isolated)

    def track(self, event: Event, seq: int) -> None:
        self.seq[id(event)] = seq

    def remember(self, contact: ContactState, event: Event) -> None:
        runtime.add_event(contact, event)  # a late event lands in its place

    def emit(self, event: Event) -> None:
        self.seq[id(event)] = runtime.insert_event(self.batch.db, event, self.batch.at)
        if self.emitted is not None:
            self.emitted.append(id(event))

    def handled(self, event: Event) -> None:
        self.batch.tally.events += 1
        seq = self.seq.pop(id(event), None)
        if seq is not None:
            self.batch.handled.append(seq)

    def _seq(self, event: Event, done: bool = False) -> int:
        seq = self.seq.pop(id(event), None) if done else self.seq.get(id(event))
        if seq is None:  # every event the loop handles over the store is a row of it
            raise LookupError(f"the event {event.name} at {event.at.isoformat()} has no row in the store")
        return seq

    def hold(self, event: Event, enrollment: Enrollment) -> None:
        self.batch.held.append((enrollment.workflow, self._seq(event), enrollment.id))

    def release(self, event: Event, workflow_id: str) -> None:
        # One held item per (event, workflow), released once: its row in `seq` goes with it.
        self.batch.released.append((workflow_id, self._seq(event, done=True)))


class SqliteOutbox:
    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def message(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState,
                message: RenderedMessage) -> None:
        """Queued; its `email_sent` event is written when the provider accepts it (`runtime.record_delivery`)."""
        body = message.to_bytes() if message.channel == "email" else message.text.encode("utf-8")
        self.batch.messages.append({
            "key": message.key, "message_id": message.message_id, "enrollment": enrollment.id,
            "workflow": workflow.id, "version": workflow.version, "step": message.step, "contact": contact.id,
            "channel": message.channel, "template": message.template, "marketing": int(message.marketing),
            "to_address": message.to, "sender": message.sender, "subject": message.subject, "body": body,
            "status": "pending", "next_try_at": None, "created_at": stamp(message.at), "updated_at": self.batch.at,
            "ref": message.ref, "envelope": message.envelope, "release": self.batch.release})

    def task(self, effect: Effect) -> None:
        task = effect.data
        self.batch.tasks.append({"key": effect.key, "contact": effect.contact, "workflow": effect.workflow,
                                 "step": effect.step, "title": task.get("title", ""), "assignee": task.get("assignee"),
                                 "notes": task.get("notes"), "due_at": task.get("due"), "created_at": stamp(effect.at),
                                 "handoff": self.batch.task_handoff})


class SqliteAnswers:
    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def coupon(self, pool: str, contact_id: str, at: datetime, expires_at: datetime | None = None) -> str | None:
        return take_coupon_in(self.batch.db, pool, contact_id, at, expires_at)

    def webhook(self, enrollment: Enrollment, request: dict[str, Any], at: datetime) -> Any:
        # Queued with the batch; the call itself is made after, outside any transaction (a slow endpoint must
        # not hold the store), and the enrollment waits in `pending` until its answer is recorded.
        position = enrollment.position
        occurrence = enrollment.occurrences.get(position, 1) if position is not None else 1
        runtime.insert_call(self.batch.db, f"{enrollment.id}:{position}:{occurrence}", enrollment.id, request,
                            self.batch.at)
        return Later.LATER


class SqliteTimers:
    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.inactive: dict[tuple[str, str], datetime | None] = {}
        self.segment: dict[tuple[str, str], bool] = {}

    def inactive_since(self, workflow_id: str, contact_id: str) -> datetime | None:
        key = (workflow_id, contact_id)
        if key not in self.inactive:
            self.inactive[key] = runtime.timer(self.batch.db, workflow_id, contact_id)
        return self.inactive[key]

    def set_inactive(self, workflow_id: str, contact_id: str, last_at: datetime, due: datetime) -> None:
        self.inactive[(workflow_id, contact_id)] = last_at
        runtime.set_timer(self.batch.db, workflow_id, contact_id, last_at, due)  # a later tick wakes it

    def fired(self, workflow_id: str, contact_id: str) -> None:
        runtime.clear_timer(self.batch.db, workflow_id, contact_id)

    def in_segment(self, workflow_id: str, contact_id: str) -> bool:
        key = (workflow_id, contact_id)
        if key not in self.segment:
            self.segment[key] = runtime.in_segment(self.batch.db, workflow_id, contact_id)
        return self.segment[key]

    def set_segment(self, workflow_id: str, contact_id: str, inside: bool) -> None:
        self.segment[(workflow_id, contact_id)] = inside
        runtime.set_segment(self.batch.db, workflow_id, contact_id, inside, self.batch.at)

    def members(self, workflow_id: str) -> Iterable[str]:
        return segment_members(self.batch.db, workflow_id)  # set_segment writes at once: the store has them all

    def begun(self, workflow_id: str) -> bool:
        return runtime.get_state(self.batch.db, f"started:{workflow_id}") is not None

    def started(self, workflow_id: str) -> None:
        runtime.set_state(self.batch.db, f"started:{workflow_id}", self.batch.at)

    def forget(self) -> None:
        self.inactive.clear()
        self.segment.clear()


class SqliteWorkflows:
    """The deployed versions, loaded from the store when first asked for. A version this mauto cannot load is
    told to `broken` once (a `workflow` failure) and its enrollments left as they are until it is deployed
    again."""

    def __init__(self, batch: Batch, broken: Callable[[str, int, str], None],
                 running: list[tuple] | None = None) -> None:
        """`running`: the rows of `runtime.running_workflows` as read when the tick began (several workers on
        PostgreSQL: the plan's, so that every claim of the tick runs what the plan read); None: read now."""
        self.batch, self.on_broken = batch, broken
        self.versions: dict[tuple[str, int], Workflow] = {}
        self.broken: dict[tuple[str, int], str] = {}  # deployed versions that cannot be loaded, and why
        running = list(running) if running is not None else runtime.running_workflows(batch.db)
        self.rows = running
        self.states = {row[0]: row[2] for row in running}  # as the tick began: a pause takes effect at the next
        self.enrolling_since = {row[0]: datetime.fromisoformat(row[3]) for row in running}
        current = [workflow for workflow in (self.loadable(row[0], row[1]) for row in running) if workflow is not None]
        self.running = [workflow for workflow in current if self.states[workflow.id] == "active"]
        self.registry = {workflow.id: workflow for workflow in self.running}

    def version(self, workflow_id: str, version: int) -> Workflow:
        key = (workflow_id, version)
        workflow = self.versions.get(key)
        if workflow is None:
            source = runtime.workflow_source(self.batch.db, workflow_id, version)
            if source is None:
                raise MautoError(f"workflow `{workflow_id}` v{version} is not in the store", self.batch.store.shown)
            workflow = self.versions[key] = build(parse(source, f"{workflow_id} v{version} (deployed)"))
        return workflow

    def loadable(self, workflow_id: str, version: int) -> Workflow | None:
        key = (workflow_id, version)
        if key in self.broken:
            return None
        try:
            return self.version(workflow_id, version)
        except Exception as error:  # noqa: BLE001 - one workflow that does not load must not stop the others
            if store_failure(error):
                raise
            why = self.broken[key] = f"workflow `{workflow_id}` v{version} (deployed) cannot be loaded: " \
                                     f"{reason(error)}; its enrollments wait until it is deployed again"
            self.on_broken(workflow_id, version, why)
            return None

    def taking(self) -> list[Workflow]:
        return self.running

    def since(self, workflow_id: str) -> datetime | None:
        return self.enrolling_since.get(workflow_id)

    def named(self, workflow_id: str) -> Workflow | None:
        return self.registry.get(workflow_id)

    def of(self, enrollment: Enrollment) -> Workflow | None:
        return self.loadable(enrollment.workflow, enrollment.version)

    def paused(self, workflow_id: str) -> bool:
        return self.states.get(workflow_id) == "paused"


class SqliteJournal:
    """The step log into the store with the batch; the action log (files erasure cannot reach) without the
    details made of the contact's data."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def record(self, entries: list[LogEntry]) -> None:
        batch = self.batch
        for entry in entries:
            if entry.kind == "enter":
                batch.tally.enrolled += 1
            elif entry.kind == "failed":
                batch.tally.failed += 1
            why = entry.detail if entry.kind not in _RENDERED_DETAIL else None
            batch.log("step", {"at": entry.at.isoformat(), "contact": entry.contact, "workflow": entry.workflow,
                               "version": entry.version, "step": entry.step, "kind": entry.kind,
                               "channel": entry.channel, "template": entry.template, "why": why})
        batch.entries.extend(entries)

    def woke(self, enrollment: Enrollment) -> None:
        self.batch.tally.advanced += 1


class SqliteFailures:
    """A trigger that cannot be listed for a contact: recorded once in `failures`, not again every tick."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def trigger(self, error: Exception, workflow_id: str, contact_id: str | None, at: datetime) -> None:
        if store_failure(error):
            raise error
        batch, why = self.batch, f"listing the trigger: {reason(error)}"
        if runtime.has_failure(batch.db, "trigger", why, contact_id, workflow_id):
            return
        runtime.record_failure(batch.db, batch.at, "trigger", why, moment=at, contact=contact_id, workflow=workflow_id)
        batch.tally.problem("trigger", why, contact=contact_id, workflow=workflow_id)
        batch.log("error", {"workflow": workflow_id, "contact": contact_id, "why": reason(error)})
        batch.tally.errors += 1


@dataclass
class SqlitePorts:
    """One set of ports over the store, as the tick holds them (their caches and buffers within reach)."""

    contacts: SqliteContacts
    enrollments: SqliteEnrollments
    events: SqliteEvents
    outbox: SqliteOutbox
    answers: SqliteAnswers
    timers: SqliteTimers
    workflows: SqliteWorkflows
    journal: SqliteJournal
    failures: SqliteFailures

    def ports(self) -> Ports:
        return Ports(self.contacts, self.enrollments, self.events, self.outbox, self.answers, self.timers,
                     self.workflows, self.journal, self.failures)

    def forget(self) -> None:
        """Drop what was loaded: the next use reads it back from the store."""
        self.contacts.forget()
        self.enrollments.forget()
        self.timers.forget()

    def loaded(self) -> int:
        """How many contacts and enrollments are held in memory."""
        return len(self.contacts.loaded) + len(self.enrollments.loaded)


def enrollment_id(key: str, workflow_id: str, contact_id: str, number: int) -> str:
    """The id of a contact's `number`th enrollment in a workflow: the workflow's id and 20 hex digits of an
    HMAC-SHA256, under the store's key (`runtime.id_key`), of (workflow, contact, number). The same every time
    (a batch re-run after a crash makes the same ids, hence the same message keys), and nothing in it names
    the contact (it outlives the contact's erasure in the keys made from it) nor can be checked against a
    guessed address without the key."""
    text = json.dumps(["enrollment", workflow_id, contact_id, number])  # ASCII: escapes whatever an id holds
    digest = hmac.new(key.encode("utf-8"), text.encode("ascii"), hashlib.sha256).hexdigest()
    return f"{workflow_id}:{digest[:20]}"


def sqlite_ports(batch: Batch, fields: dict[str, Any], zone: str, workflows: SqliteWorkflows,
                 unreadable: Callable[[str, BaseException], None]) -> SqlitePorts:
    """The set of ports over the store the batch writes to."""
    return SqlitePorts(SqliteContacts(batch, fields, zone), SqliteEnrollments(batch, unreadable), SqliteEvents(batch),
                       SqliteOutbox(batch), SqliteAnswers(batch), SqliteTimers(batch), workflows,
                       SqliteJournal(batch), SqliteFailures(batch))
