"""The daemon's tick: the loop `mauto simulate` runs, over the SQLite store's ports and real channels.

A tick at `now`:

1. takes the events not yet processed (in time order) — enrolls, wakes `wait_for`s, applies `exit_on` and
   `goal` — and 2. the `segment`, `date`, `inactivity` and `schedule` triggers come due, and 3. every
   enrollment whose wake-up has come, all in one queue ordered by time, exactly as the simulation orders them
   (the same `mauto.driver.Driver` over other ports: that is why their timelines agree); committed in
   batches, each batch one transaction holding the enrollments, their outgoing messages, contact changes,
   tasks, coupons and the step log together;
4. calls the webhooks whose steps are waiting, hands new tasks to their owners when mauto.yaml says how
   (`mauto.daemon.tasks`), then sends what the outbox holds (`mauto.daemon.outbox`),
   recording before each hand-off that it begins (so that a crash in the middle leaves the message
   `unknown`, never resent).

Times: the engine runs each item at its own moment (the event's time, the wake-up time), not at the moment
the tick happens to run, so that a send due at 09:00 is decided for 09:00 whether the tick ran at 09:00:00
or 09:00:30. See docs/daemon.md.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from mauto.channels import base as channels
from mauto.config import Project
from mauto.consent import ADDRESS_FIELD
from mauto.daemon.lock import AdvisoryTickLock, tick_lock
from mauto.daemon.outbox import send_outbox
from mauto.daemon.report import TickReport
from mauto.daemon.tasks import hand_over_tasks
from mauto.daemon.winners import decide_winners, winners_due, winners_in_force
from mauto.driver.loop import Driver
from mauto.driver.queue import Item
from mauto.driver.sqlite import Batch, Log, SqliteWorkflows, sqlite_ports
from mauto.engine.interpreter import Engine, Settings
from mauto.engine.records import Event
from mauto.engine.state import LogEntry
from mauto.errors import MautoError
from mauto.messages import MessageRenderer
from mauto.release import release_project
from mauto.store import runtime, workers
from mauto.store.postgres import PgStore
from mauto.store.runtime import failure_reason as reason
from mauto.store.sqlite import Rollback, Store, stamp, store_failure

BATCH = 500  # queue items per transaction
CLAIM = 200  # contacts a worker takes at a time on PostgreSQL (several workers: `shared_tick`)
PLAN = "mauto:plan"  # PostgreSQL: held alone while planning, shared while claiming
KEEP = 5000  # contacts and enrollments kept in memory between batches; past it, forgotten (the store has them)


class Tick:
    """One tick's run of the loop over the store: fills the queue, drains it in batches, answers webhooks.

    One bad item never stops it. A batch runs at full speed in one transaction; when an item in it fails
    (anything but the store itself), the batch is rolled back, memory is put back as it was at the batch's
    start, and the same items run again one at a time, each in a savepoint of its own: the item that fails
    again is rolled back alone and recorded as failed, with its reason, and the others are committed."""

    def __init__(self, project: Project, store: Store, now: datetime, log: Log, renderer: MessageRenderer,
                 report: TickReport, stopping: Callable[[], bool] = lambda: False, release: int | None = None,
                 running: list[tuple] | None = None) -> None:
        self.project, self.store, self.db = project, store, store.db
        self.release_id, self.renderer = release, renderer
        self.now, self.at = now, stamp(now)
        self.log_action, self.report = log, report
        self.logged: list[tuple[str, dict[str, Any]]] = []  # action lines, written once their batch commits
        self.stopping = stopping  # asked between batches: a daemon shutting down
        self.engine = Engine(Settings.from_project(project))
        self.batch = Batch(store, now, report, self._log)
        # tasks made with a hand-off to do when mauto.yaml has `tasks.handoff` (checked here: a bad one stops
        # the tick before anything runs, at its place in mauto.yaml); `hand_over_tasks` does it after the commit
        self.batch.task_handoff = "pending" if project.task_handoff is not None else None
        self.batch.release = release  # each message records the release it was rendered from
        self.workflows = SqliteWorkflows(self.batch, self._broken, running)  # None: as they are now
        self.ports = sqlite_ports(self.batch, self.engine.settings.contact_fields, project.timezone,
                                  self.workflows, self._unreadable)
        self.contacts, self.enrollments, self.events = self.ports.contacts, self.ports.enrollments, self.ports.events
        self.driver = Driver(self.engine, self.ports.ports(), renderer, project.segments,
                             now + timedelta(microseconds=1))
        self.queue = self.driver.queue

    # --- what the ports tell -----------------------------------------------------------------------------

    def _log(self, kind: str, data: dict[str, Any]) -> None:
        """An action line, written when what it tells is committed (a batch rolled back never logged)."""
        self.logged.append((kind, data))

    def write_log(self) -> None:
        for kind, data in self.logged:
            self.log_action(kind, data)
        self.logged.clear()

    def _broken(self, workflow_id: str, version: int, why: str) -> None:
        runtime.record_failure(self.db, self.at, "workflow", why, ref=f"{workflow_id}:{version}", workflow=workflow_id)
        self.report.problem("workflow", why, workflow=workflow_id)
        self.report.errors += 1
        self._log("error", {"workflow": workflow_id, "version": version, "why": why})

    def _unreadable(self, enrollment_id: str, error: BaseException) -> None:
        self.fail_enrollment(enrollment_id, error, self.now)

    # --- filling the queue ---------------------------------------------------------------------------------

    def winners_due(self) -> datetime | None:
        """The midnight UTC at which a split with `winner:` is to be decided, when this tick passes one (the
        tick then runs up to it first: `tick`), else None."""
        return winners_due(self.db, self.workflows.running, self.now)

    def prepare(self) -> None:
        """Fill the queue with what is due at `now`: events, triggers, wake-ups, timers."""
        # The splits that picked their winner, and those that pick it now (once past each midnight UTC).
        self.engine.winners = decide_winners(self.db, self.workflows.running, self.now, self._log)
        lower = self._window()
        self._events()
        self._held()
        for workflow in self.workflows.taking():
            start = max(lower, self.workflows.enrolling_since[workflow.id])
            self.driver.schedule(workflow, start, self.now, first=not self.ports.timers.begun(workflow.id))
        self._per_contact(None)

    def prepare_plan(self, lower: datetime | None) -> None:
        """Several workers (PostgreSQL), the one planning: what only one may do at `now` (the splits' winners,
        the events held for resumed workflows, the triggers' listings from `lower`, None: none), and what is due
        for the contacts those name, so that each contact's items still run in time order. The rest of the
        contacts' due items are claimed by the workers (`prepare_for`)."""
        self.engine.winners = decide_winners(self.db, self.workflows.running, self.now, self._log)
        self._held()
        if lower is not None:
            for workflow in self.workflows.taking():
                start = max(lower, self.workflows.enrolling_since[workflow.id])
                self.driver.schedule(workflow, start, self.now, first=not self.ports.timers.begun(workflow.id))
        contacts = self._queued_contacts()
        if contacts is None or contacts:
            self._per_contact(contacts, events=True)

    def prepare_for(self, contacts: list[str]) -> None:
        """Several workers (PostgreSQL): what is due for these contacts, which this worker holds locked."""
        self.engine.winners = winners_in_force(self.db, self.workflows.running)
        self._per_contact(contacts, events=True)

    def _queued_contacts(self) -> list[str] | None:
        """The contacts the queue's items name; None when an item stands for every contact (a segment's first
        check, or so many that naming them is no help)."""
        named: set[str] = set()
        for entry in self.queue.entries:
            item = entry[4]
            kind = item[0]
            if kind in ("due", "inactive", "segment"):
                named.add(item[2])
            elif kind in ("event", "held"):
                named.add(item[1].contact)
            else:
                return None
        return sorted(named) if len(named) <= 10 * CLAIM else None

    def _per_contact(self, contacts: list[str] | None, events: bool = False) -> None:
        """The events not yet processed (with `events`), inactivity timers and wake-ups due, of `contacts` (None:
        every contact)."""
        if events:
            self._events(contacts)
        for workflow_id, contact_id, last_at, due_at in runtime.due_timers(self.db, self.now, contacts):
            if isinstance(last_at, Exception):
                runtime.clear_timer(self.db, workflow_id, contact_id)
                self.ports.failures.trigger(last_at, workflow_id, contact_id, self.now)
                continue
            if self.workflows.named(workflow_id) is not None:
                self.driver.push_inactive(workflow_id, contact_id, last_at, due_at)
        for number, enrollment in enumerate(runtime.due_enrollments(self.db, self.now, contacts)):
            if isinstance(enrollment, runtime.Unreadable):
                self.fail_enrollment(enrollment.id, enrollment.error, self.now)
                continue
            if number < KEEP:  # past it, each is read again when its turn comes: memory stays per batch
                enrollment = self.enrollments.keep(enrollment)
            # wake_at None: left with no wake-up, goes on from where it stands, now (None matches None)
            self.driver.push_wake(enrollment, enrollment.wake_time or self.now)

    def _window(self) -> datetime:
        """The first moment this tick's triggers list from: just after the last tick (or, on the very first,
        the first deploy: what happened before it is history, which has_event, segments and inactivity see
        and which triggers nothing, as what happens before a simulation's start)."""
        db, now = self.db, self.now
        watermark = runtime.get_state(db, "clock")
        last = datetime.fromisoformat(watermark) if watermark else None
        if last is not None and now < last:
            raise MautoError(f"--now {now.isoformat()} is before the last tick ({last.isoformat()}): the store's "
                             "clock never goes back", self.store.shown)
        history = runtime.get_state(db, "history_before")
        if history is None:
            deployed = [since for since in self.workflows.enrolling_since.values() if since <= now]
            boundary = min(deployed) if deployed else now
            runtime.skip_history(db, boundary, self.at)
            runtime.set_state(db, "history_before", boundary.isoformat())
            history = boundary.isoformat()
        return last + timedelta(microseconds=1) if last is not None else datetime.fromisoformat(history)

    def _events(self, contacts: list[str] | None = None) -> None:
        for seq, event in runtime.unprocessed_events(self.db, self.now, contacts):
            if isinstance(event, runtime.Unreadable):
                runtime.mark_processed(self.db, [seq], self.at)
                why = f"event {seq} does not read back: {reason(event.error)}"
                runtime.record_failure(self.db, self.at, "event", why, ref=str(seq), contact=event.contact)
                self.report.problem("event", why, contact=event.contact)
                self.report.errors += 1
                self._log("error", {"event": seq, "contact": event.contact, "why": why})
                continue
            self.events.track(event, seq)
            self.driver.push_event(event)

    def _held(self) -> None:
        # The events held while a workflow was paused, now that it is not: to its enrollments before anything else.
        for seq, workflow_id, enrollment_ids, held in runtime.held_events(self.db):
            if isinstance(held, runtime.Unreadable):
                runtime.release_held(self.db, [(workflow_id, seq)])
                why = f"event {seq} held for {workflow_id} does not read back: {reason(held.error)}"
                runtime.record_failure(self.db, self.at, "event", why, ref=str(seq), contact=held.contact,
                                       workflow=workflow_id)
                self.report.problem("event", why, contact=held.contact, workflow=workflow_id)
                self.report.errors += 1
                self._log("error", {"event": seq, "contact": held.contact, "workflow": workflow_id, "why": why})
                continue
            self.events.track(held, seq)
            self.driver.push_held(held, workflow_id, enrollment_ids)

    # --- draining it ---------------------------------------------------------------------------------------

    def drain(self, progress: Callable[[int], None] | None = None) -> None:
        """Handle every queued item due by `now`, BATCH items to a transaction; stop between batches when asked
        (see the class's docstring for what happens when an item fails)."""
        while self.queue and self.queue.first()[0] < self.driver.end and not self.stopping():
            saved = self._save()
            failure: list[BaseException] = []
            with self.store.transaction():
                try:
                    done = self._batch(isolated=False)
                except Exception as error:  # noqa: BLE001 - sorted out below: the store's, or one item's
                    if store_failure(error):
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
            if self.ports.loaded() > KEEP:
                self.forget()
        if not self.queue:
            self.forget()

    def _save(self) -> tuple:
        """What a rolled-back transaction must find in memory again: the queue, the events' rows, the
        report's counts, the versions found broken (so that they are said again), the log not yet written."""
        return (self.queue.copy(), dict(self.events.seq), self.report.counters(), dict(self.workflows.broken),
                len(self.logged))

    def _restore(self, saved: tuple) -> None:
        """Memory as `_save` found it; what was loaded is forgotten (the store has it as it was)."""
        queue, event_seq, counters, broken, logged = saved
        self.queue.put_back(queue)
        self.events.seq, self.workflows.broken = event_seq, broken
        self.report.restore(counters)
        del self.logged[logged:]
        self.batch.reset()
        self.forget()

    def _batch(self, isolated: bool) -> int:
        """Up to BATCH due items, inside the caller's transaction; how many were handled."""
        done = 0
        while self.queue and done < BATCH:
            at, item = self.queue.first()
            if at >= self.driver.end:
                break
            self.queue.pop()
            if isolated:
                self._isolated(at, item)
            else:
                self.driver.process(at, item)
            done += 1
        if not isolated:
            self.batch.flush()
        return done

    def _isolated(self, at: datetime, item: Item) -> None:
        """One item in a savepoint of its own, flushed at once: when it fails, it alone is undone and failed."""
        seq = self.events.seq.get(id(item[1])) if item[0] in ("event", "held") else None
        logged, counters, broken = len(self.logged), self.report.counters(), dict(self.workflows.broken)
        self.queue.watch()
        self.events.emitted = []
        try:
            with runtime.savepoint(self.db):
                self.driver.process(at, item)
                self.batch.flush()
        except Exception as error:  # noqa: BLE001 - the store's failures go up; any other is this item's
            if store_failure(error):
                raise
            self.queue.drop(self.queue.unwatch())  # what the item queued and emitted goes with it
            for key in self.events.emitted or ():
                self.events.seq.pop(key, None)
            del self.logged[logged:]
            self.report.restore(counters)
            self.workflows.broken = broken
            self.batch.reset()
            self.forget()
            self.item_failed(at, item, error, seq)
        finally:
            self.queue.unwatch()
            self.events.emitted = None

    def forget(self) -> None:
        """Drop what was loaded: everything is committed, so the next use reads it back from the store.

        Between two batches only; without it a tick with 100,000 due would hold every contact until it ends.
        """
        self.ports.forget()

    # --- what failed -----------------------------------------------------------------------------------------

    def item_failed(self, at: datetime, item: Item, error: BaseException, seq: int | None = None) -> None:
        """Record that an item could not be handled, and why; make sure it does not come back every tick."""
        kind, why = item[0], reason(error)
        if kind == "wake":
            self.fail_enrollment(item[1], error, at)
            return
        db = self.db
        if kind == "event":
            event = item[1]
            if seq is not None:
                runtime.mark_processed(db, [seq], self.at)  # not handled, and not to be tried again each tick
            runtime.record_failure(db, self.at, "event", f"event {event.name}: {why}", moment=at,
                                   ref=str(seq) if seq is not None else None, contact=event.contact)
            self.report.problem("event", f"event {event.name}: {why}", contact=event.contact, at=at.isoformat())
            self._withdrawal_of_failed(event)
            self._log("error", {"event": event.name, "contact": event.contact, "at": at.isoformat(), "why": why})
        elif kind == "held":  # an event held while its workflow was paused: dropped, not tried again every tick
            event, workflow_id = item[1], item[2]
            if seq is not None:
                runtime.release_held(db, [(workflow_id, seq)])
            why = f"event {event.name} (held while {workflow_id} was paused): {why}"
            runtime.record_failure(db, self.at, "event", why, moment=event.at,
                                   ref=str(seq) if seq is not None else None, contact=event.contact,
                                   workflow=workflow_id)
            self.report.problem("event", why, contact=event.contact, workflow=workflow_id, at=event.at.isoformat())
            self._log("error", {"event": event.name, "contact": event.contact, "workflow": workflow_id,
                                "at": event.at.isoformat(), "why": why})
        else:  # due, inactive, segment: one workflow's trigger for one contact
            workflow_id, contact_id = item[1], item[2] if len(item) > 2 else None
            if kind == "inactive" and contact_id is not None:
                runtime.clear_timer(db, workflow_id, contact_id)
            runtime.record_failure(db, self.at, "trigger", f"{kind} trigger: {why}", moment=at,
                                   contact=contact_id, workflow=workflow_id)
            self.report.problem("trigger", f"{kind} trigger: {why}", contact=contact_id, workflow=workflow_id)
            self._log("error", {"workflow": workflow_id, "contact": contact_id, "at": at.isoformat(), "why": why})
        self.report.errors += 1

    def _withdrawal_of_failed(self, event: Event) -> None:
        """What an event says of consent holds even when the rest of its handling failed and was rolled back:
        an unsubscribe, a complaint or a hard bounce is never lost with it."""
        suppress, withdraw = runtime.withdrawal(event)
        if not (suppress or withdraw):
            return
        info = runtime.address_of(self.db, event.contact)
        if info is None:
            return
        address = info[ADDRESS_FIELD[suppress]] if suppress else None  # the email address, the phone number
        if suppress and address and self.store.suppress(address, suppress, event.name):
            self._log("suppressed", {"contact": event.contact, "channel": suppress, "why": event.name})
        if withdraw:
            runtime.withdraw_consent(self.db, event.contact, withdraw, self.at)

    def fail_enrollment(self, enrollment_id: str, error: BaseException, at: datetime) -> None:
        """End an enrollment that cannot go on as failed, with the reason, in the step log and the failures."""
        why = reason(error)
        db = self.db
        row = runtime.enrollment_place(db, enrollment_id)
        if row is None or not runtime.fail_enrollment(db, enrollment_id, f"could not go on: {why}", self.at):
            return
        workflow_id, version, contact_id, position = row
        runtime.insert_log(db, [LogEntry(at, contact_id, workflow_id, version, position or "", "failed",
                                         f"could not go on: {why}")])
        runtime.record_failure(db, self.at, "enrollment", why, moment=at, ref=enrollment_id, contact=contact_id,
                               workflow=workflow_id)
        self.report.problem("enrollment", why, enrollment=enrollment_id, contact=contact_id, workflow=workflow_id)
        self.enrollments.drop(enrollment_id)
        self.report.failed += 1
        self._log("error", {"enrollment": enrollment_id, "contact": contact_id, "at": at.isoformat(), "why": why})

    # --- webhooks ----------------------------------------------------------------------------------------------

    def answer_calls(self, call: Callable[[dict, str], Any]) -> int:
        """Make the webhook calls that are due (outside any transaction), then record each answer and go on."""
        done = 0
        for item in runtime.due_calls(self.db, self.now):
            if "error" in item:  # its stored request does not read back: this call fails, and its enrollment
                with self.store.transaction() as db:
                    runtime.record_call(db, item["id"], "failed", reason(item["error"]), self.at)
                    self.fail_enrollment(item["enrollment"], item["error"], self.now)
                self.write_log()
                done += 1
                continue
            try:
                result = call(item["request"], item["key"])
            except Exception as error:  # noqa: BLE001 - a transport's surprise fails this call, not the tick
                from mauto.channels.webhook import FAILED, WebhookResult

                result = WebhookResult(FAILED, None, None, reason(error))
            done += 1
            self.report.calls += 1
            saved = self._save()
            failure: list[BaseException] = []
            with self.store.transaction():
                try:
                    self._answer_call(item, result)
                except Exception as error:  # noqa: BLE001 - this call's enrollment fails; the tick goes on
                    if store_failure(error):
                        raise
                    failure.append(error)
                    raise Rollback from None
            if failure:
                self._restore(saved)  # what the rolled-back answer queued or emitted goes with it
                with self.store.transaction() as db:
                    runtime.record_call(db, item["id"], "failed", reason(failure[0]), self.at)
                    self.fail_enrollment(item["enrollment"], failure[0], self.now)
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
        self.enrollments.put(enrollment)
        workflow = self.workflows.of(enrollment)
        if workflow is None:
            raise MautoError(self.workflows.broken[(enrollment.workflow, enrollment.version)])
        contact = self.contacts.get(enrollment.contact)
        if contact is None:
            raise MautoError("the contact was erased")
        request = item["request"]
        attempts = item["attempts"] + 1
        # Not the URL nor the answer: both may hold the contact's data (a rendered URL, an echoed body).
        self._log("webhook", {"key": item["key"], "status": result.status, "code": result.code})
        if result.status == "ok":
            runtime.record_call(db, item["id"], "done", result.detail, self.at)
            # answered at once: at the step's own moment (as the simulation does); else when it came
            pending = enrollment.pending  # set: the enrollment is in state `pending`
            at = datetime.fromisoformat(pending["at"]) if attempts == 1 and pending is not None else self.now
            self.driver.handle(workflow, self.engine.resume(workflow, enrollment, contact, result.response, at),
                               contact)
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
            self.driver.handle(workflow, self.engine.fail(workflow, enrollment, self.now, why), contact)
        self.batch.flush()


# --- the tick --------------------------------------------------------------------------------------------


def unsubscribe_secret(project: Project, store: Store) -> str | None:
    """The key unsubscribe links are signed with: the environment variable `unsubscribe_secret_env` names
    when it is set (stores, or `mauto serve` on another machine, sharing one), else the store's own."""
    with store.guard():
        return runtime.signing_secret(store.db, os.environ, project.data.get("unsubscribe_secret_env"))


def message_renderer(project: Project, store: Store) -> MessageRenderer:
    """The renderer a tick sends with. Never the public key simulations sign with: with no secret anywhere,
    links cannot be signed, and nothing is sent (anyone could forge an unsubscribe for any contact)."""
    secret = unsubscribe_secret(project, store)
    serve = project.serve
    if secret is None and (project.data.get("unsubscribe_url") or serve.public_url or serve.bounce_address):
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
    """One tick at `now` (see the module's docstring). Takes the store's tick lock or raises RunnerBusy.

    The workflows, settings and templates are the current release's (`mauto.release`), never the files on
    disk; the channels (`transports`) are the running configuration's."""
    if isinstance(store, PgStore):
        return shared_tick(project, store, now, transports, log, call, send, stopping, progress, renderer)
    started = time.monotonic()
    log = log or (lambda kind, data: None)
    report = TickReport(now)
    lock = tick_lock(store)
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
        run = _prepared(project, store, now, log, renderer, report, stopping, progress, Tick.prepare)
        if run is None:
            return report
        project = run.project
        run.write_log()
        run.drain(progress)
        if call is None:
            from mauto.channels.webhook import call_webhook

            call = call_webhook
        while not stopping() and run.answer_calls(call):
            pass
        if send and not stopping():  # the tasks the committed batches made, to their owners (mauto.daemon.tasks)
            hand_over_tasks(project, store, now, transports, log, report, stopping)
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


def _prepared(live: Project, store: Store, now: datetime, log: Log, given: MessageRenderer | None,
              report: TickReport, stopping: Callable[[], bool], progress: Callable[[int], None] | None,
              prepare: Callable[[Tick], None]) -> Tick | None:
    """The tick's run at `now`, its queue filled by `prepare`, after running up to each midnight UTC it passes
    (a split picks its winner at midnight from what happened before it, as `mauto simulate` does: up to just
    before, decide, go on); None when asked to stop meanwhile. The release and the workflow versions are read
    in one transaction: a deploy between them would pair new versions with the old release's templates."""
    while True:
        with store.transaction():
            project, release_id = release_project(live, store)
            renderer = given or message_renderer(project, store)
            run = Tick(project, store, now, log, renderer, report, stopping, release_id)
            cut = run.winners_due()
            if cut is None:
                prepare(run)
                return run
        with store.transaction():
            early = Tick(project, store, cut - timedelta(microseconds=1), log, renderer, report, stopping,
                         release_id)
            early.prepare()
        early.write_log()
        early.drain(progress)
        if stopping():
            return None
        with store.transaction() as db:
            runtime.set_state(db, "clock", early.now.isoformat())
            decide_winners(db, early.workflows.running, cut, early._log)
        early.write_log()


# --- several workers on one PostgreSQL store -----------------------------------------------------------------

def shared_tick(project: Project, store: PgStore, now: datetime, transports: dict[str, channels.Transport],
                log: Log | None = None, call: Callable[[dict, str], Any] | None = None, send: bool = True,
                stopping: Callable[[], bool] = lambda: False, progress: Callable[[int], None] | None = None,
                renderer: MessageRenderer | None = None) -> TickReport:
    """One tick on a PostgreSQL store that several daemons (`mauto daemon` on several machines) share.

    1. Planning, one worker at a time (the advisory lock `mauto:plan`, alone): cut-off hand-offs of workers that
       are gone become `unknown`; the splits' winners; the events held for resumed workflows; the triggers'
       listings since the last plan, with what is due for the contacts they name (so that each contact's items
       run in time order), drained as a tick does.
       Last, the contacts with something due (a wake-up, an event, an inactivity timer) are queued in the order
       of their first due moment (`runtime.queue_due`).
    2. Claiming, every worker at once (`mauto:plan` shared: no one plans meanwhile): contacts taken from the
       queue CLAIM at a time, each locked for the worker's transaction with FOR UPDATE SKIP LOCKED, so that no
       two workers take one contact and none waits for another; their items drained in that transaction (a
       savepoint a batch). A worker killed half-way rolls back: what it held is back in the queue at once, and
       done by the next.
    3. Webhooks and tasks' hand-offs, one worker at a time again; 4. the outbox, every worker at once, each
       sending the messages it took (a lease: `runtime.claim_messages`).

    Every worker holds `mauto:tick` shared for the whole tick: `contacts erase` takes it alone."""
    started = time.monotonic()
    log = log or (lambda kind, data: None)
    report = TickReport(now)
    lock = AdvisoryTickLock(store, shared=True).acquire()
    try:
        plan = _plan(project, store, now, log, renderer, report, stopping, progress)
        if plan is None:
            return report
        live, release_id, renderer, running = plan
        if not stopping():
            store.advisory(PLAN, wait=True, shared=True)
            try:
                _claim_all(live, store, now, log, renderer, report, stopping, release_id, running, progress)
            finally:
                store.release_advisory(PLAN, shared=True)
        if not stopping():
            store.advisory(PLAN, wait=True)
            try:
                with store.transaction():
                    run = Tick(live, store, now, log, renderer, report, stopping, release_id, running)
                if call is None:
                    from mauto.channels.webhook import call_webhook

                    call = call_webhook
                while not stopping() and run.answer_calls(call):
                    pass
                if send and not stopping():
                    hand_over_tasks(live, store, now, transports, log, report, stopping)
            finally:
                store.release_advisory(PLAN)
        if send and not stopping():
            _share_paces(store, transports)
            send_outbox(store, now, transports, log, report, stopping, progress)
    finally:
        lock.release()
    report.duration = time.monotonic() - started
    return report


def _share_paces(store: PgStore, transports: dict[str, channels.Transport]) -> None:
    """Each channel's rate and connections divided among the daemons alive (their heartbeats: `workers`), so
    that together they keep to what mauto.yaml says; ticks from cron write no heartbeat and count as one."""
    from mauto.channels.pace import pace_of

    with store.transaction() as db:
        alive = sum(1 for row in workers.listed(db, datetime.now(UTC)) if row["alive"])
    for transport in transports.values():
        pace_of(transport).share = 1 / max(1, alive)


def _plan(live: Project, store: PgStore, now: datetime, log: Log, given: MessageRenderer | None, report: TickReport,
          stopping: Callable[[], bool], progress: Callable[[int], None] | None
          ) -> tuple[Project, int | None, MessageRenderer, list[tuple]] | None:
    """Step 1 of `shared_tick`, under `mauto:plan` alone: the release, renderer and running workflows read in
    one transaction, which every later step of the tick keeps (a deploy meanwhile is the next tick's); None
    when asked to stop."""
    store.advisory(PLAN, wait=True)
    try:
        with store.transaction() as db:
            # this worker has no hand-off in progress as its tick begins: one it began is cut off too
            def cut_off(worker: str) -> bool:
                return worker == store.worker or store.gone(worker)

            for message_id, key in runtime.recover_handoffs(db, stamp(now), cut_off):
                report.unknown += 1
                log("unknown", {"key": key, "id": message_id,
                                "why": "its hand-off began before a crash; not resent (see `mauto outbox --unknown`)"})
        run = _prepared(live, store, now, log, given, report, stopping, progress,
                        lambda planned: planned.prepare_plan(_plan_from(planned)))
        if run is None:
            return None
        project, release_id, renderer = run.project, run.release_id, run.renderer
        run.write_log()
        run.drain(progress)
        if stopping():
            return None
        with store.transaction() as db:
            if _later(runtime.get_state(db, "clock"), now):
                runtime.set_state(db, "clock", now.isoformat())
            # up to the latest plan's moment: a worker that planned later, and claims after this plan, finds its
            # contacts in the queue (each worker claims those due by its own `now`)
            runtime.queue_due(db, _latest_plan(db, now))
        return project, release_id, renderer, run.workflows.rows
    finally:
        store.release_advisory(PLAN)


SKEW = timedelta(minutes=1)  # how far one worker's clock may lag the last plan's and plan nothing, quietly


def _plan_from(run: Tick) -> datetime | None:
    """Where this plan's trigger listings start: just after the last one's `now`; None (nothing to list) when
    another worker planned up to a moment a little later than this one's (machines' clocks differ)."""
    last = runtime.get_state(run.db, "clock")
    if last is not None and run.now <= datetime.fromisoformat(last) and \
            datetime.fromisoformat(last) - run.now <= SKEW:
        return None
    return run._window()


def _later(last: str | None, now: datetime) -> bool:
    return last is None or now > datetime.fromisoformat(last)


def _latest_plan(db: Any, now: datetime) -> datetime:
    """The moment the queue reaches: the latest plan's (the store's clock), or `now` if later."""
    last = runtime.get_state(db, "clock")
    return now if last is None else max(now, datetime.fromisoformat(last))


def _claim_all(project: Project, store: Store, now: datetime, log: Log, renderer: MessageRenderer,
               report: TickReport, stopping: Callable[[], bool], release_id: int | None, running: list[tuple],
               progress: Callable[[int], None] | None) -> None:
    """Step 2 of `shared_tick`: contacts taken CLAIM at a time until none is left due; the action lines of a
    claim are written once its transaction commits."""
    lines: list[tuple[str, dict[str, Any]]] = []
    while not stopping():
        lines.clear()
        with store.transaction() as db:
            claimed = runtime.claim_contacts(db, now, CLAIM)
            if not claimed:
                break
            contacts = [contact for contact, _ in claimed]
            run = Tick(project, store, now, lambda kind, data: lines.append((kind, data)), renderer, report,
                       stopping, release_id, running)
            run.prepare_for(contacts)
            run.write_log()
            run.drain(progress)
            # what the claim leaves goes back in the queue: what comes due after this worker's clock and by the
            # latest plan's (a worker with a later clock does it), or, stopped half-way, all that is left
            stopped, latest = stopping(), _latest_plan(db, now)
            if stopped or latest > now:
                runtime.requeue(db, contacts, None if stopped else now, latest)
        for kind, data in lines:
            log(kind, data)
