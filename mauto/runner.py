"""The daemon's tick: the engine that `mauto simulate` uses, over the SQLite store and real channels.

A tick at `now`:

1. takes the events not yet processed (in time order) — enrolls, wakes `wait_for`s, applies `exit_on` and
   `goal` — and 2. the `segment`, `date`, `inactivity` and `schedule` triggers come due, and 3. every
   enrollment whose wake-up has come, all in one queue ordered by time, exactly as the simulation orders them
   (`TickDriver` *is* the simulation's driver with the store underneath: that is why their timelines agree);
   committed in batches, each batch one transaction holding the enrollments, their outgoing messages, contact
   changes, tasks, coupons and the step log together;
4. calls the webhooks whose steps are waiting, then sends what the outbox holds, recording before each
   hand-off that it begins (so that a crash in the middle leaves the message `unknown`, never resent).

Times: the engine runs each item at its own moment (the event's time, the wake-up time), not at the moment
the tick happens to run, so that a send due at 09:00 is decided for 09:00 whether the tick ran at 09:00:00
or 09:00:30. See docs/daemon.md.
"""
from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mauto.channels import base as channels
from mauto.config import Project
from mauto.engine.interpreter import refusal
from mauto.engine.records import ContactState, Event
from mauto.engine.state import Enrollment, LogEntry, Outcome
from mauto.engine.timing import zone
from mauto.engine.triggers import date_due, schedule_due
from mauto.errors import ExitCode, MautoError, printable
from mauto.messages import MessageRenderer, RenderedMessage, dated
from mauto.simulate import _DUE, _EVENT, _WAKE, Samples, Simulation
from mauto.store import runtime
from mauto.store.coupons import take_coupon_in
from mauto.store.sqlite import Rollback, Store, StoreError, stamp
from mauto.workflow.loader import parse
from mauto.workflow.model import Workflow, build

BATCH = 500  # queue items per transaction
KEEP = 5000  # contacts and enrollments kept in memory between batches; past it, forgotten (the store has them)
SEND_BATCH = 200  # messages read from the outbox at a time
PROBLEMS_SHOWN = 100  # failures listed in a tick's JSON report (all are in `mauto failures`)
# Steps whose detail is made of rendered templates or set values (a task's title, a field's new value, a
# webhook's URL): the action log leaves it out.
_RENDERED_DETAIL = frozenset({"task", "update", "webhook", "coupon"})
Log = Callable[[str, dict[str, Any]], None]


def _store_failure(error: BaseException) -> bool:
    """Whether an error is the store's own (the disk, a lock, a damaged file), which stops the tick, rather
    than one item's (a value SQLite refuses, a bug met by one contact's data), which fails that item alone."""
    if isinstance(error, StoreError):
        return True
    if isinstance(error, (sqlite3.OperationalError, sqlite3.InternalError)):
        return True
    return type(error) is sqlite3.DatabaseError  # "database disk image is malformed", "file is not a database"


def _reason(error: BaseException) -> str:
    """An error as one line for the failures list and the log: its type and text, control characters shown."""
    text = str(error) if isinstance(error, MautoError) else f"{type(error).__name__}: {error}"
    return printable(text)[:runtime.REASON_LIMIT]


class RunnerBusy(MautoError):
    """Another tick holds the store's lock."""

    exit_code = ExitCode.FINDINGS


# --- the lock ------------------------------------------------------------------------------------------


class TickLock:
    """One tick at a time per store: an exclusive `flock` on `<store>.lock`.

    The kernel releases a flock when its process dies, however it dies, so a lock left by a killed tick never
    blocks the next one; the file keeps the last holder's pid, host and start time, to name it when busy and
    to say when a dead holder's lock was taken over.
    """

    def __init__(self, store_path: Path, shown: str) -> None:
        self.path = Path(f"{store_path}.lock")
        self.shown = f"{shown}.lock"
        self.handle: Any = None
        self.took_over: str | None = None  # "pid 123 on host (started …)" when the last holder died holding it

    def acquire(self, wait: float = 0.0, doing: str = "this one did nothing") -> TickLock:
        """Take the lock, or raise RunnerBusy naming the holder; `wait` seconds for it first (polling)."""
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open as long as the lock is
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise RunnerBusy(f"another tick is running against this store ({holder}); {doing}",
                                 self.shown) from None
        handle.seek(0)
        previous = handle.read().strip()
        if previous.startswith("pid "):
            pid_text, _, rest = previous[4:].partition(" ")
            if not rest.endswith("(finished)") and pid_text.isdigit() and not _alive(int(pid_text)):
                self.took_over = previous
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}")
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            self.handle.seek(0)
            text = self.handle.read().strip()
            self.handle.seek(0)
            self.handle.truncate()
            self.handle.write(f"{text} (finished)")
            self.handle.flush()
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None

    def __enter__(self) -> TickLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the report ----------------------------------------------------------------------------------------


@dataclass
class TickReport:
    now: datetime
    enrolled: int = 0
    advanced: int = 0
    events: int = 0
    queued: int = 0  # messages put in the outbox
    sent: int = 0
    retried: int = 0
    parked: int = 0
    unknown: int = 0
    cancelled: int = 0
    failed: int = 0  # enrollments that ended failed
    errors: int = 0  # other items the tick could not handle (an event, a trigger, a workflow): `mauto failures`
    calls: int = 0
    duration: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)  # what failed, as `mauto failures` lists it

    @property
    def needs_attention(self) -> bool:
        """Something failed or waits for a person: `run --once` exits 1."""
        return bool(self.parked or self.unknown or self.failed or self.errors)

    def counters(self) -> tuple[int, ...]:
        return (self.enrolled, self.advanced, self.events, self.queued, self.failed, self.errors, len(self.problems))

    def restore(self, counters: tuple[int, ...]) -> None:
        self.enrolled, self.advanced, self.events, self.queued, self.failed, self.errors, problems = counters
        del self.problems[problems:]

    def problem(self, kind: str, reason: str, **where: Any) -> None:
        """One failure, as `mauto failures` lists it, for the JSON report."""
        self.problems.append({"kind": kind, **{key: value for key, value in where.items() if value is not None},
                              "reason": reason})

    def line(self) -> str:
        parts = [f"tick {self.now.isoformat(timespec='seconds')}: {self.enrolled} enrolled",
                 f"{self.advanced} advanced", f"{self.sent} sent", f"{self.retried} retried",
                 f"{self.parked} parked", f"{self.failed} failed"]
        if self.errors:
            parts.append(f"{self.errors} error{'s' if self.errors != 1 else ''}")
        if self.unknown:
            parts.append(f"{self.unknown} unknown")
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        return ", ".join(parts) + f" in {self.duration:.2f}s"

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "enrolled": self.enrolled, "advanced": self.advanced,
                "events": self.events, "queued": self.queued, "sent": self.sent, "retried": self.retried,
                "parked": self.parked, "unknown": self.unknown, "cancelled": self.cancelled, "failed": self.failed,
                "errors": self.errors, "calls": self.calls, "duration_s": round(self.duration, 3), "notes": self.notes,
                "problems": self.problems[:PROBLEMS_SHOWN]}


# --- the driver ----------------------------------------------------------------------------------------


class _Lazy(dict):
    """Rows loaded from the store on first use, then kept for the tick (one object per key)."""

    def __init__(self, load: Callable[[Any], Any]) -> None:
        super().__init__()
        self.load = load

    def __missing__(self, key: Any) -> Any:
        value = self[key] = self.load(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:  # the simulation asks with .get()
        value = self[key]
        return default if value is None else value


class TickDriver(Simulation):
    """The simulation's driver, reading and writing the store instead of memory."""

    def __init__(self, project: Project, store: Store, now: datetime, log: Log, renderer: MessageRenderer,
                 report: TickReport) -> None:
        self.store = store
        self.db = store.db
        self.now = now
        self.at = stamp(now)
        self.log_action = log
        self.report = report
        self.logged: list[tuple[str, dict[str, Any]]] = []  # action lines, written once their batch commits
        self.pushed: set[int] | None = None  # sequence numbers queued by the item in hand (isolated mode)
        self.emitted: list[int] | None = None  # id() of the events it emitted (isolated mode)
        self.versions: dict[tuple[str, int], Workflow] = {}
        self.broken: dict[tuple[str, int], str] = {}  # deployed versions this mauto cannot load, and why
        running = runtime.running_workflows(self.db)
        self.states = {row[0]: row[2] for row in running}
        self.enrolling_since = {row[0]: datetime.fromisoformat(row[3]) for row in running}
        current = [workflow for workflow in (self._loadable(row[0], row[1]) for row in running)
                   if workflow is not None]
        taking = [workflow for workflow in current if self.states[workflow.id] == "active"]
        super().__init__(project, taking, Samples([], []), now, now + timedelta(microseconds=1),
                         all_workflows=taking, keep_timeline=False, renderer=renderer)
        fields, tz = self.engine.settings.contact_fields, project.timezone
        self.contacts = _Lazy(lambda contact_id: runtime.load_contact(self.db, contact_id, fields, tz,
                                                                      store.phone_region))
        self.enrollments = _Lazy(self._load_enrollment)
        self.history = _Lazy(self._load_history)
        self.active = _Lazy(lambda contact_id: runtime.enrollment_ids(self.db, contact_id, in_flight=True))
        self.segment_state = _Lazy(lambda key: runtime.in_segment(self.db, *key))
        self.inactive_since = _Lazy(lambda key: runtime.timer(self.db, *key))
        self.event_seq: dict[int, int] = {}  # id(event) -> seq, to mark it processed
        self.stopping: Callable[[], bool] = lambda: False
        self._reset_batch()

    # --- loading --------------------------------------------------------------------------------------

    def _version(self, workflow_id: str, version: int) -> Workflow:
        key = (workflow_id, version)
        workflow = self.versions.get(key)
        if workflow is None:
            source = runtime.workflow_source(self.db, workflow_id, version)
            if source is None:
                raise MautoError(f"workflow `{workflow_id}` v{version} is not in the store", self.store.shown)
            workflow = self.versions[key] = build(parse(source, f"{workflow_id} v{version} (deployed)"))
        return workflow

    def _loadable(self, workflow_id: str, version: int) -> Workflow | None:
        """The deployed version, or None when this mauto cannot load it: recorded once a tick (a `workflow`
        failure), and its enrollments left as they are (not failed) until it is fixed and deployed again."""
        key = (workflow_id, version)
        if key in self.broken:
            return None
        try:
            return self._version(workflow_id, version)
        except Exception as error:  # noqa: BLE001 - one workflow that does not load must not stop the others
            if _store_failure(error):
                raise
            why = self.broken[key] = f"workflow `{workflow_id}` v{version} (deployed) cannot be loaded: " \
                                     f"{_reason(error)}; its enrollments wait until it is deployed again"
            runtime.record_failure(self.db, self.at, "workflow", why, ref=f"{workflow_id}:{version}",
                                   workflow=workflow_id)
            self.report.problem("workflow", why, workflow=workflow_id)
            self.report.errors += 1
            self._log("error", {"workflow": workflow_id, "version": version, "why": why})
            return None

    def _workflow_of(self, enrollment: Enrollment) -> Workflow | None:
        return self._loadable(enrollment.workflow, enrollment.version)

    def _load_enrollment(self, enrollment_id: str) -> Enrollment | None:
        """An enrollment from the store; one whose data does not read back is failed there and then (None)."""
        try:
            return runtime.get_enrollment(self.db, enrollment_id)
        except Exception as error:  # noqa: BLE001 - this enrollment's problem, not the tick's
            if _store_failure(error):
                raise
            self._fail_enrollment(enrollment_id, error, self.now)
            return None

    def _enrollment(self, enrollment_id: str) -> Enrollment:
        enrollment = self.enrollments.get(enrollment_id)
        if enrollment is None:
            enrollment = runtime.get_enrollment(self.db, enrollment_id)
            if enrollment is None:  # its id was just listed in the same transaction
                raise LookupError(f"enrollment {enrollment_id} is not in the store")
            self.enrollments[enrollment_id] = enrollment
        return enrollment

    def _load_history(self, key: tuple[str, str]) -> list[Enrollment]:
        workflow, contact = key
        return [self._enrollment(enrollment_id) for enrollment_id in runtime.enrollment_ids(self.db, contact, workflow)]

    def _new_enrollment_id(self, workflow: Workflow, contact: ContactState, previous: list[Enrollment]) -> str:
        # Deterministic: a batch re-run after a crash makes the same ids, hence the same message keys.
        return f"{workflow.id}:{contact.id}:{len(previous) + 1}"

    def _prepare(self) -> None:  # noqa: C901 - split by the refactor of issue 11
        """Fill the queue with what is due at `now`: events, triggers, wake-ups, timers."""
        db, now = self.db, self.now
        watermark = runtime.get_state(db, "clock")
        last = datetime.fromisoformat(watermark) if watermark else None
        if last is not None and now < last:
            raise MautoError(f"--now {now.isoformat()} is before the last tick ({last.isoformat()}): the store's "
                             "clock never goes back", self.store.shown)
        history = runtime.get_state(db, "history_before")
        if history is None:
            # The very first tick: what happened before the first deploy is history (has_event, segments and
            # inactivity see it; it triggers nothing), as what happens before a simulation's start.
            deployed = [since for since in self.enrolling_since.values() if since <= now]
            boundary = min(deployed) if deployed else now
            runtime.skip_history(db, boundary, self.at)
            runtime.set_state(db, "history_before", boundary.isoformat())
            history = boundary.isoformat()
        lower = last + timedelta(microseconds=1) if last is not None else datetime.fromisoformat(history)
        for seq, event in runtime.unprocessed_events(db, now):
            if isinstance(event, runtime.Unreadable):
                runtime.mark_processed(db, [seq], self.at)
                why = f"event {seq} does not read back: {_reason(event.error)}"
                runtime.record_failure(db, self.at, "event", why, ref=str(seq), contact=event.contact)
                self.report.problem("event", why, contact=event.contact)
                self.report.errors += 1
                self._log("error", {"event": seq, "contact": event.contact, "why": why})
                continue
            self.event_seq[id(event)] = seq
            self._push(event.at, _EVENT, ("event", event))
        for workflow in self.workflows:
            start = max(lower, self.enrolling_since[workflow.id])
            kind, spec = workflow.trigger.kind, workflow.trigger.value
            first = runtime.get_state(db, f"started:{workflow.id}") is None
            if kind == "date":
                fields, tz_name = self.engine.settings.contact_fields, self.project.timezone
                for contact in runtime.contact_rows(db, fields, tz_name):
                    try:  # a contact's odd date fails that contact's trigger, not the tick
                        tz = zone(self.engine.zone_name(workflow, contact))
                        moments = date_due(spec, contact.fields.get(spec["field"]), tz, start, self.end)
                    except Exception as error:  # noqa: BLE001
                        self._trigger_failed(error, workflow.id, contact.id, now)
                        continue
                    for moment, why in moments:
                        self._push(moment, _DUE, ("due", workflow.id, contact.id, why))
            elif kind == "schedule":
                try:
                    tz = zone(spec.get("timezone") or self.project.timezone)
                    fires = schedule_due(spec, tz, start, self.end)
                except Exception as error:  # noqa: BLE001
                    self._trigger_failed(error, workflow.id, None, now)
                    continue
                if fires:
                    ids = list(runtime.contact_ids(db))
                    for moment, why in fires:
                        for contact_id in ids:
                            self._push(moment, _DUE, ("due", workflow.id, contact_id, why))
            elif kind == "inactivity" and first:
                for contact_id in runtime.contact_ids(db):
                    try:
                        self._schedule_inactivity(workflow, self.contacts[contact_id], now)
                    except Exception as error:  # noqa: BLE001
                        self._trigger_failed(error, workflow.id, contact_id, now)
                runtime.set_state(db, f"started:{workflow.id}", self.at)
            elif kind == "segment" and first:
                self._push(now, _DUE, ("segments", workflow.id))  # marked started when done
        for workflow_id, contact_id, last_at, due_at in runtime.due_timers(db, now):
            if isinstance(last_at, Exception):
                runtime.clear_timer(db, workflow_id, contact_id)
                self._trigger_failed(last_at, workflow_id, contact_id, now)
                continue
            if workflow_id in self.registry:
                self._push(due_at, _DUE, ("inactive", workflow_id, contact_id, last_at))
        for number, enrollment in enumerate(runtime.due_enrollments(db, now)):
            if isinstance(enrollment, runtime.Unreadable):
                self._fail_enrollment(enrollment.id, enrollment.error, now)
                continue
            if number < KEEP:  # past it, each is read again when its turn comes: memory stays per batch
                enrollment = self.enrollments.setdefault(enrollment.id, enrollment)
            # wake_at None: left with no wake-up, goes on from where it stands, now (None matches None)
            self._push(enrollment.wake_time or now, _WAKE, ("wake", enrollment.id, enrollment.wake_at))

    # --- what the store does differently ----------------------------------------------------------------

    def _remember_inactivity(self, workflow: Workflow, contact: ContactState, last_at: datetime,
                             due: datetime) -> None:
        super()._remember_inactivity(workflow, contact, last_at, due)
        runtime.set_timer(self.db, workflow.id, contact.id, last_at, due)  # a later tick wakes it if not this one

    def _emit(self, event: Event) -> None:
        self.event_seq[id(event)] = runtime.insert_event(self.db, event, self.at)
        if self.emitted is not None:
            self.emitted.append(id(event))
        super()._emit(event)

    def _push(self, at: datetime, priority: int, payload: tuple) -> int:
        number = super()._push(at, priority, payload)
        if self.pushed is not None:  # the item in hand's, removed again if it fails
            self.pushed.add(number)
        return number

    def _log(self, kind: str, data: dict[str, Any]) -> None:
        """An action line, written when what it tells is committed (a batch rolled back never logged)."""
        self.logged.append((kind, data))

    def write_log(self) -> None:
        for kind, data in self.logged:
            self.log_action(kind, data)
        self.logged.clear()

    def _answer_pending(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState) -> None:
        pending = enrollment.pending
        if pending is None:  # called only for an enrollment waiting on an answer
            return
        at = datetime.fromisoformat(pending["at"])
        if pending["kind"] == "coupon":
            code = take_coupon_in(self.db, pending["pool"], contact.id, at)
            self._handle(workflow, self.engine.resume(workflow, enrollment, contact, code, at))
            return
        # A webhook is called outside any transaction (a slow endpoint must not hold the store): queue the call;
        # the enrollment waits in `pending` until its answer is recorded.
        position = enrollment.position
        occurrence = enrollment.occurrences.get(position, 1) if position is not None else 1
        key = f"{enrollment.id}:{position}:{occurrence}"
        runtime.insert_call(self.db, key, enrollment.id, pending["request"], self.at)

    def _rendered(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState,
                  message: RenderedMessage) -> None:
        body = message.to_bytes() if message.channel == "email" else message.text.encode("utf-8")
        self.batch_messages.append({
            "key": message.key, "message_id": message.message_id, "enrollment": enrollment.id,
            "workflow": workflow.id, "version": workflow.version, "step": message.step, "contact": contact.id,
            "channel": message.channel, "template": message.template, "marketing": int(message.marketing),
            "to_address": message.to, "sender": message.sender, "subject": message.subject, "body": body,
            "status": "pending", "next_try_at": None, "created_at": stamp(message.at), "updated_at": self.at})

    def _handle(self, workflow: Workflow, outcome: Outcome) -> None:
        enrollment = outcome.enrollment
        self.dirty[enrollment.id] = enrollment
        for effect in outcome.effects:
            if effect.kind in ("update", "score", "lists"):
                self.dirty_contacts.add(enrollment.contact)
            elif effect.kind == "task":
                task = effect.data
                self.batch_tasks.append({"key": effect.key, "contact": effect.contact, "workflow": effect.workflow,
                                         "step": effect.step, "title": task.get("title", ""),
                                         "assignee": task.get("assignee"), "notes": task.get("notes"),
                                         "due_at": task.get("due"), "created_at": stamp(effect.at)})
        super()._handle(workflow, outcome)

    def _record(self, entries: list[LogEntry]) -> None:
        for entry in entries:
            if entry.kind == "enter":
                self.report.enrolled += 1
            elif entry.kind == "failed":
                self.report.failed += 1
            # The step log in the store keeps every detail (erasure reaches it); the action log, which goes to
            # files erasure cannot reach, leaves out the details made of the contact's data.
            why = entry.detail if entry.kind not in _RENDERED_DETAIL else None
            self._log("step", {"at": entry.at.isoformat(), "contact": entry.contact,
                               "workflow": entry.workflow, "version": entry.version, "step": entry.step,
                               "kind": entry.kind, "channel": entry.channel, "template": entry.template,
                               "why": why})
        self.batch_log.extend(entries)

    def _on_event(self, event: Event) -> None:
        contact = self.contacts[event.contact]
        if contact is None:  # erased since the event arrived
            return
        suppress, withdraw = runtime.withdrawal(event)
        if suppress:
            address = contact.fields.get("email")
            if address and self.store.suppress(address, suppress, event.name):
                contact.suppressed.add(suppress)
                self._log("suppressed", {"contact": contact.id, "channel": suppress, "why": event.name})
        if withdraw:
            contact.fields[f"{withdraw}_consent"] = False
            runtime.withdraw_consent(self.db, contact.id, withdraw, self.at)
        self._on_event_enrolling(event)

    def _withdrawal_of_failed(self, event: Event) -> None:
        """What an event says of consent holds even when the rest of its handling failed and was rolled back:
        an unsubscribe, a complaint or a hard bounce is never lost with it."""
        suppress, withdraw = runtime.withdrawal(event)
        if not (suppress or withdraw):
            return
        info = runtime.address_of(self.db, event.contact)
        if info is None:
            return
        if suppress and info["email"]:
            self.store.suppress(info["email"], suppress, event.name)
        if withdraw:
            runtime.withdraw_consent(self.db, event.contact, withdraw, self.at)

    def _remember(self, contact: ContactState, event: Event) -> None:
        runtime.add_event(contact, event)  # a late event lands in its place

    def _on_event_enrolling(self, event: Event) -> None:
        # A workflow takes contacts from events that happen after it was deployed, never from history.
        taking = [workflow for workflow in self.workflows if event.at >= self.enrolling_since[workflow.id]]
        if len(taking) == len(self.workflows):
            super()._on_event(event)
            return
        every = self.workflows
        self.workflows = taking
        try:
            super()._on_event(event)
        finally:
            self.workflows = every

    def _process(self, at: datetime, payload: tuple) -> None:
        kind = payload[0]
        if kind == "event":
            self.report.events += 1
            seq = self.event_seq.pop(id(payload[1]), None)
            if seq is not None:
                self.batch_processed.append(seq)
            super()._process(at, payload)
        elif kind == "wake":
            enrollment = self.enrollments.get(payload[1])
            if enrollment is not None and enrollment.wake_at == payload[2] and not enrollment.ended:
                workflow = self._loadable(enrollment.workflow, enrollment.version)
                if workflow is None:
                    return  # its version cannot be loaded: said once for the tick, the enrollment waits
                if self.contacts[enrollment.contact] is None:  # erased (contacts erase ends them; a race)
                    self.engine.exit(workflow, enrollment, at, "the contact was erased")
                    self.dirty[enrollment.id] = enrollment  # no step log: the contact is no more
                    return
                self.report.advanced += 1
            super()._process(at, payload)
        elif kind in ("due", "inactive"):
            workflow_id, contact_id = payload[1], payload[2]
            if kind == "inactive":
                runtime.clear_timer(self.db, workflow_id, contact_id)
            if self.contacts[contact_id] is None:
                return  # erased meanwhile
            if any(datetime.fromisoformat(enrollment.entered_at) == at
                   for enrollment in self.history[(workflow_id, contact_id)]):
                return  # done by an earlier tick that stopped before its end (date, schedule: same window again)
            super()._process(at, payload)
        elif kind == "segments":
            # One item per contact, so that one contact's failure is that contact's alone; at the events'
            # priority, so that they all run before what they cause at the same moment (as the simulation's
            # one loop over the contacts does); the first check is done once all are (a tick stopped between
            # batches does it again, and contacts already in the segment are not entered twice).
            for contact_id in list(runtime.contact_ids(self.db)):
                self._push(at, _EVENT, ("segment", payload[1], contact_id))
            self._push(at, _EVENT, ("segments-done", payload[1]))
        elif kind == "segments-done":
            runtime.set_state(self.db, f"started:{payload[1]}", self.at)
        elif kind == "segment":
            contact = self.contacts[payload[2]]
            if contact is not None:
                self._check_segment(self.registry[payload[1]], contact, at)
        else:
            super()._process(at, payload)

    def _check_segment(self, workflow: Workflow, contact: ContactState, at: datetime) -> None:
        key = (workflow.id, contact.id)
        before = self.segment_state.get(key, False)
        super()._check_segment(workflow, contact, at)
        after = bool(self.segment_state.get(key, False))
        if after != bool(before):
            runtime.set_segment(self.db, workflow.id, contact.id, after, self.at)

    # --- batches -------------------------------------------------------------------------------------

    def _reset_batch(self) -> None:
        self.dirty: dict[str, Enrollment] = {}
        self.dirty_contacts: set[str] = set()
        self.batch_messages: list[dict[str, Any]] = []
        self.batch_tasks: list[dict[str, Any]] = []
        self.batch_log: list[LogEntry] = []
        self.batch_processed: list[int] = []

    def _flush(self) -> None:
        db = self.db
        runtime.save_enrollments(db, list(self.dirty.values()))
        for contact_id in self.dirty_contacts:
            runtime.save_contact(db, self.contacts[contact_id], self.at)
        runtime.insert_messages(db, self.batch_messages)
        runtime.insert_tasks(db, self.batch_tasks)
        runtime.insert_log(db, self.batch_log)
        runtime.mark_processed(db, self.batch_processed, self.at)
        self.report.queued += len(self.batch_messages)
        for message in self.batch_messages:
            self._log("queued", {"key": message["key"], "contact": message["contact"],
                                 "channel": message["channel"], "template": message["template"],
                                 "at": message["created_at"]})
        self._reset_batch()

    def drain(self, progress: Callable[[int], None] | None = None) -> None:
        """Handle every queued item due by `now`, BATCH items to a transaction; stop between batches when asked.

        One bad item never stops the tick. A batch runs at full speed in one transaction; when an item in it
        fails (anything but the store itself), the batch is rolled back, memory is put back as it was at the
        batch's start, and the same items run again one at a time, each in a savepoint of its own: the item
        that fails again is rolled back alone and recorded as failed, with its reason (`_item_failed`), and
        the others are committed. The usual batch pays nothing for this but a copy of the queue."""
        while self.queue and self.queue[0][3] < self.end and not self.stopping():
            saved = self._save()
            failure: list[BaseException] = []
            with self.store.transaction():
                try:
                    done = self._batch(isolated=False)
                except Exception as error:  # noqa: BLE001 - sorted out below: the store's, or one item's
                    if _store_failure(error):
                        raise
                    failure.append(error)
                    raise Rollback from None
            if failure:
                self._restore(saved)
                with self.store.transaction():
                    done = self._batch(isolated=True)
            self.write_log()
            if progress is not None:
                progress(done)
            if len(self.contacts) + len(self.enrollments) > KEEP:
                self._forget()
        if not self.queue:
            self._forget()

    def _save(self) -> tuple:
        """What a rolled-back transaction must find in memory again: the queue, the events' rows, the
        report's counts, the versions found broken (so that they are said again), the log not yet written."""
        return list(self.queue), dict(self.event_seq), self.report.counters(), dict(self.broken), len(self.logged)

    def _restore(self, saved: tuple) -> None:
        """Memory as `_save` found it; what was loaded is forgotten (the store has it as it was)."""
        queue, event_seq, counters, broken, logged = saved
        self.queue, self.event_seq, self.broken = queue, event_seq, broken
        self.report.restore(counters)
        del self.logged[logged:]
        self._reset_batch()
        self._forget()

    def _batch(self, isolated: bool) -> int:
        """Up to BATCH due items, inside the caller's transaction; how many were handled."""
        done = 0
        while self.queue and done < BATCH:
            _, _, _, at, payload = self.queue[0]
            if at >= self.end:
                break
            heapq.heappop(self.queue)
            if isolated:
                self._isolated(at, payload)
            else:
                self._process(at, payload)
            done += 1
        if not isolated:
            self._flush()
        return done

    def _isolated(self, at: datetime, payload: tuple) -> None:
        """One item in a savepoint of its own, flushed at once: when it fails, it alone is undone and failed."""
        db = self.db
        seq = self.event_seq.get(id(payload[1])) if payload[0] == "event" else None
        logged, counters, broken = len(self.logged), self.report.counters(), dict(self.broken)
        self.pushed, self.emitted = set(), []
        db.execute("SAVEPOINT item")
        try:
            self._process(at, payload)
            self._flush()
        except Exception as error:  # noqa: BLE001 - the store's failures go up; any other is this item's
            if _store_failure(error):
                raise
            db.execute("ROLLBACK TO item")
            db.execute("RELEASE item")
            pushed, emitted = self.pushed, self.emitted
            self.queue = [entry for entry in self.queue if entry[2] not in pushed]
            heapq.heapify(self.queue)
            for key in emitted:
                self.event_seq.pop(key, None)
            del self.logged[logged:]
            self.report.restore(counters)
            self.broken = broken
            self._reset_batch()
            self._forget()
            self._item_failed(at, payload, error, seq)
        else:
            db.execute("RELEASE item")
        finally:
            self.pushed = self.emitted = None

    def _item_failed(self, at: datetime, payload: tuple, error: BaseException, seq: int | None = None) -> None:
        """Record that an item could not be handled, and why; make sure it does not come back every tick."""
        kind, reason = payload[0], _reason(error)
        if kind == "wake":
            self._fail_enrollment(payload[1], error, at)
            return
        db = self.db
        if kind == "event":
            event = payload[1]
            if seq is not None:
                runtime.mark_processed(db, [seq], self.at)  # not handled, and not to be tried again each tick
            runtime.record_failure(db, self.at, "event", f"event {event.name}: {reason}", moment=at,
                                   ref=str(seq) if seq is not None else None, contact=event.contact)
            self.report.problem("event", f"event {event.name}: {reason}", contact=event.contact, at=at.isoformat())
            self._withdrawal_of_failed(event)
            self._log("error", {"event": event.name, "contact": event.contact, "at": at.isoformat(), "why": reason})
        else:  # due, inactive, segment: one workflow's trigger for one contact
            workflow_id, contact_id = payload[1], payload[2] if len(payload) > 2 else None
            if kind == "inactive" and contact_id is not None:
                runtime.clear_timer(db, workflow_id, contact_id)
            runtime.record_failure(db, self.at, "trigger", f"{kind} trigger: {reason}", moment=at,
                                   contact=contact_id, workflow=workflow_id)
            self.report.problem("trigger", f"{kind} trigger: {reason}", contact=contact_id, workflow=workflow_id)
            self._log("error", {"workflow": workflow_id, "contact": contact_id, "at": at.isoformat(),
                                "why": reason})
        self.report.errors += 1

    def _trigger_failed(self, error: BaseException, workflow_id: str, contact_id: str | None,
                        at: datetime) -> None:
        """A trigger that cannot be listed for a contact (its data): said once, not again every tick."""
        if _store_failure(error):
            raise error
        reason = _reason(error)
        why = f"listing the trigger: {reason}"
        if runtime.has_failure(self.db, "trigger", why, contact_id, workflow_id):
            return
        runtime.record_failure(self.db, self.at, "trigger", why, moment=at, contact=contact_id,
                               workflow=workflow_id)
        self.report.problem("trigger", why, contact=contact_id, workflow=workflow_id)
        self._log("error", {"workflow": workflow_id, "contact": contact_id, "why": reason})
        self.report.errors += 1

    def _fail_enrollment(self, enrollment_id: str, error: BaseException, at: datetime) -> None:
        """End an enrollment that cannot go on as failed, with the reason, in the step log and the failures."""
        reason = _reason(error)
        db = self.db
        row = db.execute("SELECT workflow, version, contact, position FROM enrollments WHERE id = ?",
                         [enrollment_id]).fetchone()
        if row is None or not runtime.fail_enrollment(db, enrollment_id, f"could not go on: {reason}", self.at):
            return
        workflow_id, version, contact_id, position = row
        runtime.insert_log(db, [LogEntry(at, contact_id, workflow_id, version, position or "", "failed",
                                         f"could not go on: {reason}")])
        runtime.record_failure(db, self.at, "enrollment", reason, moment=at, ref=enrollment_id, contact=contact_id,
                               workflow=workflow_id)
        self.report.problem("enrollment", reason, enrollment=enrollment_id, contact=contact_id, workflow=workflow_id)
        self.enrollments.pop(enrollment_id, None)
        self.report.failed += 1
        self._log("error", {"enrollment": enrollment_id, "contact": contact_id, "at": at.isoformat(), "why": reason})

    def _forget(self) -> None:
        """Drop what was loaded: everything is committed, so the next use reads it back from the store.

        Between two batches only; without it a tick with 100,000 due would hold every contact until it ends.
        """
        for loaded in (self.contacts, self.enrollments, self.history, self.active, self.segment_state,
                       self.inactive_since):
            loaded.clear()

    def answer_calls(self, call: Callable[[dict, str], Any]) -> int:
        """Make the webhook calls that are due (outside any transaction), then record each answer and go on."""
        done = 0
        for item in runtime.due_calls(self.db, self.now):
            if "error" in item:  # its stored request does not read back: this call fails, and its enrollment
                with self.store.transaction() as db:
                    runtime.record_call(db, item["id"], "failed", _reason(item["error"]), self.at)
                    self._fail_enrollment(item["enrollment"], item["error"], self.now)
                self.write_log()
                done += 1
                continue
            try:
                result = call(item["request"], item["key"])
            except Exception as error:  # noqa: BLE001 - a transport's surprise fails this call, not the tick
                from mauto.channels.webhook import FAILED, WebhookResult

                result = WebhookResult(FAILED, None, None, _reason(error))
            done += 1
            self.report.calls += 1
            saved = self._save()
            failure: list[BaseException] = []
            with self.store.transaction():
                try:
                    self._answer_call(item, result)
                except Exception as error:  # noqa: BLE001 - this call's enrollment fails; the tick goes on
                    if _store_failure(error):
                        raise
                    failure.append(error)
                    raise Rollback from None
            if failure:
                self._restore(saved)  # what the rolled-back answer queued or emitted goes with it
                with self.store.transaction() as db:
                    runtime.record_call(db, item["id"], "failed", _reason(failure[0]), self.at)
                    self._fail_enrollment(item["enrollment"], failure[0], self.now)
            self.write_log()
            self.drain()
        return done

    def _answer_call(self, item: dict[str, Any], result: Any) -> None:
        """Record a webhook's answer and take its enrollment on from there (inside the caller's transaction)."""
        db = self.db
        enrollment = runtime.get_enrollment(db, item["enrollment"])
        if enrollment is None or enrollment.state != "pending":
            runtime.record_call(db, item["id"], "failed", "the enrollment is no longer waiting", self.at)
            return
        enrollment = self.enrollments[enrollment.id] = enrollment
        workflow = self._workflow_of(enrollment)
        if workflow is None:
            raise MautoError(self.broken[(enrollment.workflow, enrollment.version)])
        contact = self.contacts[enrollment.contact]
        request = item["request"]
        attempts = item["attempts"] + 1
        # Not the URL nor the answer: both may hold the contact's data (a rendered URL, an echoed body).
        self._log("webhook", {"key": item["key"], "status": result.status, "code": result.code})
        if result.status == "ok":
            runtime.record_call(db, item["id"], "done", result.detail, self.at)
            # answered at once: at the step's own moment (as the simulation does); else when it came
            pending = enrollment.pending  # set: the enrollment is in state `pending`
            at = datetime.fromisoformat(pending["at"]) if attempts == 1 and pending is not None else self.now
            self._handle(workflow, self.engine.resume(workflow, enrollment, contact, result.response, at))
        elif result.status == "retry" and attempts <= int(request.get("retries", 3)):
            delay = channels.backoff(attempts)
            if getattr(result, "retry_after", None) is not None:  # the endpoint's Retry-After: never earlier
                delay = max(delay, result.retry_after)
            runtime.record_call(db, item["id"], "pending", result.detail, self.at,
                                stamp(self.now + timedelta(seconds=delay)))
        else:
            runtime.record_call(db, item["id"], "failed", result.detail, self.at)
            why = f"webhook {request['method']} {request['url']}: {result.detail}"
            if result.status == "retry":
                why += f" (after {attempts} attempts)"
            self._handle(workflow, self.engine.fail(workflow, enrollment, self.now, why))
        self._flush()


# --- sending ---------------------------------------------------------------------------------------------


def _refusal(db: Any, contact_id: str, channel: str, store: Store) -> str | None:
    """Why a marketing message may not go now (the contact changed since it was queued), or None.

    What the store knows at the hand-off wins: consent, the suppression list, and withdrawals received but not
    yet processed (an `unsubscribed` stamped after the moment the message was decided for)."""
    info = runtime.address_of(db, contact_id)
    if info is None:
        return "the contact was erased"
    address = info["email"] if channel == "email" else info["phone"]
    suppressed = bool(address) and store.is_suppressed(address, channel)
    found = refusal(channel, address, info[f"{channel}_consent"], suppressed)
    if found:
        return found
    if channel in runtime.withdrawals_pending(db, contact_id):
        return f"the contact withdrew {'email' if channel == 'email' else 'SMS'} consent (an event not yet processed)"
    return None


class _NotPending(Exception):
    """Raised by the hand-off mark when the message is no longer pending: the transport stops before DATA."""


class _Outbox:
    """One tick's sending: the transports opened so far, and the channels found unusable (misconfigured)."""

    def __init__(self, store: Store, now: datetime, transports: dict[str, channels.Transport], log: Log,
                 report: TickReport) -> None:
        self.store, self.now, self.at = store, now, stamp(now)
        self.transports, self.log, self.report = transports, log, report
        self.opened: dict[str, channels.Transport] = {}
        self.unusable: dict[str, str] = {}  # channel -> why: its messages wait for the next tick
        self.started = time.monotonic()  # a Retry-After counts from the answer, which came this long after `now`

    def close(self) -> None:
        for transport in self.opened.values():
            with contextlib.suppress(Exception):  # closing a connection that failed already: nothing to tell
                transport.__exit__(None, None, None)

    def transport(self, channel: str) -> channels.Transport | None:
        if channel in self.unusable:
            return None
        transport = self.opened.get(channel)
        if transport is not None:
            return transport
        try:
            if channel not in self.transports:
                raise MautoError(f"no transport for {channel} messages: configure channels.{channel} in mauto.yaml")
            transport = self.opened[channel] = self.transports[channel].__enter__()
        except Exception as error:  # noqa: BLE001 - a channel that cannot open leaves its messages waiting
            if _store_failure(error):
                raise
            self._unusable(channel, _reason(error))
            return None
        return transport

    def _unusable(self, channel: str, why: str) -> None:
        self.unusable[channel] = why
        self.report.errors += 1
        self.report.notes.append(f"{channel} messages were not sent: {why}; they wait in the outbox")
        self.log("error", {"channel": channel, "why": why})

    def send(self, row: dict[str, Any]) -> None:
        """Hand one message over, or decide why not; whatever this message's data does, never raise for it
        (the store's own failures aside)."""
        self.decided = False  # set once the message's fate is recorded: nothing after may record it again
        try:
            self._send(row)
        except Exception as error:  # noqa: BLE001 - one message's surprise parks it (never sent blind)
            if _store_failure(error):
                raise
            if self.decided:  # recorded already (sent, say); what failed after is not the message's
                self.report.notes.append(f"message {row['id']}: {_reason(error)}")
                return
            with self.store.guard():
                status = self.store.db.execute("SELECT status, handoff_at FROM messages WHERE id = ?",
                                               [row["id"]]).fetchone()
            handed = status is not None and status[1] is not None
            verdict = "unknown" if handed else "parked"
            answer = f"could not be sent: {_reason(error)}"
            runtime.record_delivery(self.store, row["id"], verdict, answer, self.at)
            if handed:
                self.report.unknown += 1
            else:
                self.report.parked += 1
            self.log(verdict, {"key": row["key"], "contact": row["contact"], "channel": row["channel"],
                               "answer": answer})

    def _send(self, row: dict[str, Any]) -> None:
        store, at, report, log = self.store, self.at, self.report, self.log
        channel = row["channel"]
        if row["marketing"]:
            try:
                with store.guard():
                    refusal = _refusal(store.db, row["contact"], channel, store)
            except Exception as error:  # noqa: BLE001 - consent that cannot be checked is consent not given
                if _store_failure(error):
                    raise
                refusal = f"consent could not be checked ({_reason(error)})"
            if refusal:
                runtime.record_delivery(store, row["id"], "cancelled", f"not sent: {refusal}", at)
                self.decided = True
                report.cancelled += 1
                log("cancelled", {"key": row["key"], "contact": row["contact"], "why": refusal})
                return
        transport = self.transport(channel)
        if transport is None:
            return  # the channel cannot be used this tick: the message stays pending, untouched
        body = bytes(row["body"])
        if channel == "email":  # dated when it is handed over, not when it was planned (a late tick)
            body = dated(body, self.now)
        outgoing = channels.Outgoing(row["id"], row["key"], channel, row["to_address"] or "", row["sender"],
                                     row["message_id"], body, row["contact"], row["workflow"], row["step"])
        handed = []

        def handoff() -> None:
            if not runtime.mark_handoff(store, row["id"], at):
                raise _NotPending  # a person dropped it (or it was decided) since it was read: never send it
            handed.append(True)

        try:
            delivery = transport.send(outgoing, handoff)
        except _NotPending:
            self.decided = True
            log("cancelled", {"key": row["key"], "contact": row["contact"],
                              "why": "decided meanwhile (outbox drop?); not sent"})
            return
        except Exception as error:  # noqa: BLE001 - a transport's surprise is this message's, not the tick's
            if _store_failure(error):
                raise
            if isinstance(error, MautoError) and not handed:  # the channel's configuration: all its messages wait
                self._unusable(channel, _reason(error))
                return
            status = channels.UNKNOWN if handed else channels.RETRY
            delivery = channels.Delivery(status, _reason(error))
        self._record(row, delivery, bool(handed))

    def _record(self, row: dict[str, Any], delivery: channels.Delivery, handed: bool) -> None:
        """The provider's answer, recorded once; then counted and logged."""
        attempts = row["attempts"] + 1
        detail, verdict = delivery.detail, "parked"
        count_attempt, provider_id, next_try_at = not handed, None, None
        extra: dict[str, Any] = {}
        if delivery.status == channels.SENT:
            verdict, provider_id = "sent", delivery.provider_id
        elif delivery.status == channels.RETRY and attempts < channels.MAX_ATTEMPTS:
            delay = channels.backoff(attempts)
            if delivery.retry_after is not None:  # the provider's Retry-After: never earlier than it asked
                delay = max(delay, delivery.retry_after + time.monotonic() - self.started)
            retry_at = self.now + timedelta(seconds=delay)
            verdict, next_try_at = "pending", stamp(retry_at)
            extra = {"attempt": attempts, "next_try_at": retry_at.isoformat()}
        elif delivery.status == channels.UNKNOWN:
            verdict, count_attempt = "unknown", False
        elif delivery.status != channels.PARKED:
            detail = f"gave up after {attempts} attempts: {detail}"
        runtime.record_delivery(self.store, row["id"], verdict, detail, self.at, next_try_at=next_try_at,
                                provider_id=provider_id, count_attempt=count_attempt)
        self.decided = True  # recorded: whatever the log does now, the message is not recorded again
        counted = {"sent": "sent", "pending": "retried", "unknown": "unknown", "parked": "parked"}[verdict]
        setattr(self.report, counted, getattr(self.report, counted) + 1)
        # The contact by id, never by address: the action log goes to files that erasure cannot reach.
        self.log({"pending": "retry"}.get(verdict, verdict), {
            "key": row["key"], "contact": row["contact"], "channel": row["channel"],
            "answer": _without_address(detail, row["to_address"]), **extra})


def _without_address(text: str | None, address: str | None) -> str | None:
    """A provider's answer for the log, the recipient's address in it replaced ("550 <ana@…> rejected")."""
    if not text or not address:
        return text
    from mauto.channels.smtp import idna_address

    # The address as given, lower-cased, as servers quote the envelope (ASCII domain), as reasons quote it
    # (repr, printable).
    forms = {address, address.lower(), repr(address)[1:-1], printable(address)}
    with contextlib.suppress(ValueError):
        forms.add(idna_address(address))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "<recipient>")
    return text


def send_outbox(store: Store, now: datetime, transports: dict[str, channels.Transport], log: Log,
                report: TickReport, stopping: Callable[[], bool] = lambda: False,
                progress: Callable[[int], None] | None = None) -> None:
    """Hand every due message to its channel, once: the hand-off is recorded before it begins."""
    outbox = _Outbox(store, now, transports, log, report)
    after = 0
    try:
        while not stopping():
            with store.guard():
                batch = runtime.due_messages(store.db, now, after, SEND_BATCH)
            if not batch:
                break
            for row in batch:
                if stopping():
                    break
                after = row["id"]
                outbox.send(row)
                if progress is not None:
                    progress(1)
    finally:
        outbox.close()


# --- the tick --------------------------------------------------------------------------------------------


def unsubscribe_secret(project: Project, store: Store) -> str | None:
    """The key unsubscribe links are signed with: the environment variable `unsubscribe_secret_env` names
    when it is set (stores, or `mauto serve` on another machine, sharing one), else the store's own."""
    name = project.data.get("unsubscribe_secret_env")
    value = os.environ.get(name) if isinstance(name, str) and name else None
    if value:
        return value
    with store.guard():
        return runtime.unsubscribe_secret(store.db) or None  # an empty key is no key


def message_renderer(project: Project, store: Store) -> MessageRenderer:
    """The renderer a tick sends with. Never the public key simulations sign with: with no secret anywhere,
    links cannot be signed, and nothing is sent (anyone could forge an unsubscribe for any contact)."""
    secret = unsubscribe_secret(project, store)
    if secret is None and project.data.get("unsubscribe_url"):
        name = project.data.get("unsubscribe_secret_env")
        where = f"set the environment variable {name}, or " if name else ""
        raise MautoError(f"no key to sign unsubscribe links with: {where}run `mauto db init` to make one and keep "
                         "it in the store (a tick never signs them with the public key simulations use)",
                         store.shown)
    return MessageRenderer(project, secret=secret)


def tick(project: Project, store: Store, now: datetime, transports: dict[str, channels.Transport],
         log: Log | None = None, call: Callable[[dict, str], Any] | None = None, send: bool = True,
         stopping: Callable[[], bool] = lambda: False, progress: Callable[[int], None] | None = None,
         renderer: MessageRenderer | None = None) -> TickReport:
    """One tick at `now` (see the module's docstring). Takes the store's tick lock or raises RunnerBusy."""
    started = time.monotonic()
    log = log or (lambda kind, data: None)
    report = TickReport(now)
    lock = TickLock(store.path, store.shown) if str(store.path) != ":memory:" else None
    if lock is not None:
        lock.acquire()
    try:
        if lock is not None and lock.took_over:
            report.notes.append(f"took over the lock left by {lock.took_over}, which is no longer running")
            log("lock", {"took_over": lock.took_over})
        with store.transaction() as db:
            for message_id, key in runtime.recover_handoffs(db, stamp(now)):
                report.unknown += 1
                log("unknown", {"key": key, "id": message_id,
                                "why": "its hand-off began before a crash; not resent (see `mauto outbox --unknown`)"})
        with store.transaction():
            driver = TickDriver(project, store, now, log, renderer or message_renderer(project, store), report)
            driver.stopping = stopping
            driver._prepare()
        driver.write_log()
        driver.drain(progress)
        if call is None:
            from mauto.channels.webhook import call_webhook

            call = call_webhook
        while not stopping() and driver.answer_calls(call):
            pass
        if send and not stopping():
            send_outbox(store, now, transports, log, report, stopping, progress)
        if not stopping():
            with store.transaction() as db:
                runtime.set_state(db, "clock", now.isoformat())
    finally:
        if lock is not None:
            lock.release()
    report.duration = time.monotonic() - started
    return report


# --- the outbox, by hand -----------------------------------------------------------------------------------


def retry_message(store: Store, message_id: int, now: datetime) -> dict[str, Any]:
    """Put a parked or unknown message back in the queue (a person decided it should go): sent by the next tick.

    An `unknown` message may already have been delivered (its hand-off was cut off): retrying it is the person's
    call, never mauto's. A sent or cancelled message cannot be retried."""
    return _decide(store, message_id, now, "pending", "retry asked", "retried", stamp(now))


def drop_message(store: Store, message_id: int, now: datetime) -> dict[str, Any]:
    """Decide not to send a parked, unknown or pending message: it becomes `cancelled`, with who decided."""
    return _decide(store, message_id, now, "cancelled", "dropped by hand", "dropped")


def _decide(store: Store, message_id: int, now: datetime, status: str, what: str, verb: str,
            next_try_at: str | None = None) -> dict[str, Any]:
    with store.transaction() as db:
        row = runtime.message(db, message_id)
        if row is None:
            raise MautoError(f"no message {message_id} in the outbox", store.shown)
        if row["status"] not in ("parked", "unknown", "pending"):
            raise MautoError(f"message {message_id} is {row['status']}: only parked, unknown or pending messages "
                             f"can be {verb}", store.shown)
        runtime.set_message_status(db, message_id, status, f"{what} at {now.isoformat()} "
                                   f"(was {row['status']}: {row['answer'] or '-'})", stamp(now), next_try_at)
    return {**row, "status": status, "was": row["status"]}


# --- the daemon ----------------------------------------------------------------------------------------------


def serve(project: Project, open_store: Callable[[], Store], interval: timedelta,
          transports: Callable[[], dict[str, channels.Transport]], log: Log,
          on_report: Callable[[TickReport], None], stop: Any,
          clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """Run ticks every `interval` and at each `schedule` trigger's cron line until `stop` (a threading.Event)
    is set: APScheduler, one tick at a time (one worker thread), missed runs coalesced into one.

    The tick in hand when `stop` is set finishes its batch and returns; then this returns."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    from mauto.workflow.cron import parse_cron

    failures: list[BaseException] = []

    def run() -> None:
        if stop.is_set():
            return
        try:
            with open_store() as store:
                report = tick(project, store, clock(), transports(), log, stopping=stop.is_set)
            on_report(report)
        except RunnerBusy as error:
            log("busy", {"why": error.message})
        except MautoError as error:  # the store is locked, a channel is misconfigured: say so, go on
            log("error", {"why": str(error)})
        except BaseException as error:  # noqa: BLE001 - a bug: stop the daemon, the caller reports it
            failures.append(error)
            stop.set()

    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(1)}, timezone=UTC,
                                    job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    scheduler.add_job(run, IntervalTrigger(seconds=max(interval.total_seconds(), 1)), id="tick",
                      next_run_time=datetime.now(UTC))
    with open_store() as store:
        crons = [(row[0], runtime.workflow_source(store.db, row[0], row[1])) for row in
                 runtime.running_workflows(store.db)]
    for workflow_id, source in crons:
        try:
            workflow = build(parse(source or "", workflow_id))
        except Exception as error:  # noqa: BLE001 - each tick reports it (a `workflow` failure); the rest run
            log("error", {"workflow": workflow_id, "why": f"cannot be loaded: {_reason(error)}"})
            continue
        if workflow.trigger.kind == "schedule":
            spec = workflow.trigger.value
            scheduler.add_job(run, parse_cron(spec["cron"], spec.get("timezone") or project.timezone),
                              id=f"schedule:{workflow_id}")
    scheduler.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        scheduler.shutdown(wait=True)  # the tick in hand sees `stop` and ends after its batch
    if failures:
        raise failures[0]
