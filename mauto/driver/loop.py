"""The loop both clocks share: due items in, the engine's outcomes made real through the ports.

`Driver.process(at, item)` handles one item of the queue at its own moment: an event (consent it withdraws,
wait_for and exit_on of the contact's enrollments, the workflows it enrolls into, segments it changes), a
wake-up, a trigger come due, an event held while a workflow was paused (`release`, on resume); a paused
workflow's enrollments hold the events for them rather than move. `Driver.handle` makes an engine outcome
real (the messages it sends are rendered as the engine sends them, `Driver._made`): records the log, answers
coupons and webhooks, starts other workflows, emits `contact_updated`, queues the next wake-up.
`Driver.schedule` is the one listing of a workflow's due triggers for a window.

The loop reads no clock and does no I/O of its own (rendering reads the template files, through Jinja2's
loader): every moment comes from the item, every read and write goes through `Ports`. `mauto.simulate`
wires it to memory, `mauto.daemon.tick` to the SQLite store; an item that raises is the use case's to record
(a simulation shows it on the timeline; a tick rolls it back and fails it alone).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from mauto.consent import withdrawal
from mauto.driver.ports import Entry, Later, Ports
from mauto.driver.queue import DUE, EVENT, WAKE, DueQueue, Item
from mauto.engine.interpreter import Engine
from mauto.engine.records import ContactState, Event
from mauto.engine.state import PENDING, Effect, Enrollment, LogEntry, Outcome
from mauto.engine.timing import zone
from mauto.engine.triggers import date_due, schedule_due
from mauto.errors import MautoError
from mauto.limits import EARLIEST
from mauto.messages import MessageRenderer
from mauto.workflow.durations import parse_duration
from mauto.workflow.model import Workflow


class Driver:
    """The shared loop over one set of ports, from its queue's items up to `end` (excluded)."""

    def __init__(self, engine: Engine, ports: Ports, renderer: MessageRenderer, segments: Mapping[str, Any],
                 end: datetime) -> None:
        self.engine = engine
        engine.on_send = self._made  # a message is rendered as it is sent, before the next step runs
        self.ports = ports
        self.renderer = renderer
        self.segments = segments  # the project's named segments (a segment trigger names one, or is inline)
        self.end = end
        self.queue = DueQueue()
        self._listening: dict[tuple[str, int], frozenset[str]] = {}  # `listens`, per workflow version

    # --- filling the queue ------------------------------------------------------------------------------

    def push_event(self, event: Event) -> None:
        self.queue.push(event.at, EVENT, ("event", event))

    def push_held(self, event: Event, workflow_id: str, enrollment_ids: Sequence[str]) -> None:
        """Queue an event held for enrollments of `workflow_id` while it was paused, now that it runs again:
        ahead of every other item (held events in the order pushed, which is the order they came), so that its
        enrollments have it before anything else moves them; it is handed over at its own moment, the event's.

        The item: ("held", event, workflow_id, enrollment_ids)."""
        self.queue.push(EARLIEST, EVENT, ("held", event, workflow_id, list(enrollment_ids)))

    def push_wake(self, enrollment: Enrollment, at: datetime) -> None:
        self.queue.push(at, WAKE, ("wake", enrollment.id, enrollment.wake_at))

    def push_inactive(self, workflow_id: str, contact_id: str, last_at: datetime, due: datetime) -> None:
        self.queue.push(due, DUE, ("inactive", workflow_id, contact_id, last_at))

    def schedule(self, workflow: Workflow, start: datetime, now: datetime, first: bool) -> None:
        """Queue what the workflow's trigger has due in [start, end): the date and schedule occurrences; and,
        on its first run (`first`), an inactivity timer per contact and the first check of the segment.

        A contact whose data makes its listing fail (an odd date) is told to `failures` and skipped."""
        kind, spec = workflow.trigger.kind, workflow.trigger.value
        ports = self.ports
        if kind == "date":
            for each in ports.contacts.every_near(spec, start, self.end):
                try:
                    tz = zone(self.engine.zone_name(workflow, each))
                    moments = date_due(spec, each.fields.get(spec["field"]), tz, start, self.end)
                except Exception as error:  # noqa: BLE001 - this contact's trigger, not the run
                    ports.failures.trigger(error, workflow.id, each.id, now)
                    continue
                for moment, why in moments:
                    self.queue.push(moment, DUE, ("due", workflow.id, each.id, why))
        elif kind == "schedule":
            try:
                fires = schedule_due(spec, zone(spec.get("timezone") or self.engine.settings.timezone), start,
                                     self.end)
            except Exception as error:  # noqa: BLE001 - this workflow's trigger, not the run
                ports.failures.trigger(error, workflow.id, None, now)
                return
            if fires:
                ids = list(ports.contacts.ids())
                for moment, why in fires:
                    for contact_id in ids:
                        self.queue.push(moment, DUE, ("due", workflow.id, contact_id, why))
        elif kind == "inactivity" and first:
            for contact_id in list(ports.contacts.ids()):
                try:
                    contact = ports.contacts.get(contact_id)
                    if contact is not None:
                        self.schedule_inactivity(workflow, contact, now)
                except Exception as error:  # noqa: BLE001 - this contact's trigger, not the run
                    ports.failures.trigger(error, workflow.id, contact_id, now)
            ports.timers.started(workflow.id)
        elif kind == "segment" and first:
            self.queue.push(now, DUE, ("segments", workflow.id))  # marked started when every contact is checked

    def schedule_inactivity(self, workflow: Workflow, contact: ContactState, now: datetime) -> None:
        spec = workflow.trigger.value
        last = self.last_event(workflow, contact, now)
        if last is None:
            return
        timers = self.ports.timers
        if timers.inactive_since(workflow.id, contact.id) == last.at:
            return  # already scheduled (or done) for this last event: an event `where` filtered out changes nothing
        due = max(last.at + parse_duration(spec["for"]), now)
        timers.set_inactive(workflow.id, contact.id, last.at, due)
        if due < self.end:
            self.push_inactive(workflow.id, contact.id, last.at, due)

    def last_event(self, workflow: Workflow, contact: ContactState, now: datetime) -> Event | None:
        spec = workflow.trigger.value
        scope = self.engine.scope(workflow, contact, now, now, {}, None)
        for event in reversed(contact.events):
            if event.at <= now and event.name == spec["event"] and (
                    "where" not in spec or scope.evaluate(spec["where"], event.record())):
                return event
        return None

    # --- one item ----------------------------------------------------------------------------------------

    def process(self, at: datetime, item: Item) -> None:
        """Handle one due item at its moment."""
        kind = item[0]
        if kind == "event":
            self.on_event(item[1])
            self.ports.events.handled(item[1])
        elif kind == "held":
            self.release(item[1], item[2], item[3])
        elif kind == "wake":
            self._wake(at, item[1], item[2])
        elif kind in ("due", "inactive"):
            self._due(at, item)
        elif kind == "segments":
            # One item per contact, so that one contact's failure is that contact's alone; at the events'
            # priority, so that they all run before what they cause at the same moment; the first check is
            # done once all are (a tick stopped between batches does it again, and contacts already in the
            # segment are not entered twice).
            for contact_id in self.segment_candidates(item[1], at):
                self.queue.push(at, EVENT, ("segment", item[1], contact_id))
            self.queue.push(at, EVENT, ("segments-done", item[1]))
        elif kind == "segments-done":
            self.ports.timers.started(item[1])
        elif kind == "segment":
            workflow = self.ports.workflows.named(item[1])
            contact = self.ports.contacts.get(item[2])
            if workflow is not None and contact is not None:
                self.check_segment(workflow, contact, at)
        else:
            raise ValueError(f"unknown queue item {kind!r}")

    def _wake(self, at: datetime, enrollment_id: str, wake_at: datetime | None) -> None:
        ports = self.ports
        enrollment = ports.enrollments.get(enrollment_id)
        if enrollment is None or enrollment.wake_at != wake_at or enrollment.ended:
            return  # gone, or woken otherwise since (an event it waited for): this wake-up is stale
        workflow = ports.workflows.of(enrollment)
        if workflow is None:
            return  # its version cannot be loaded: said once, the enrollment waits
        contact = ports.contacts.get(enrollment.contact)
        if contact is None:  # erased meanwhile: no step log, the contact is no more
            self.engine.exit(workflow, enrollment, at, "the contact was erased")
            ports.enrollments.save(enrollment)
            return
        ports.journal.woke(enrollment)
        self.handle(workflow, self.engine.advance(workflow, enrollment, contact, at), contact)

    def _due(self, at: datetime, item: Item) -> None:
        kind, workflow_id, contact_id = item[0], item[1], item[2]
        ports = self.ports
        if kind == "inactive":
            ports.timers.fired(workflow_id, contact_id)
        workflow = ports.workflows.named(workflow_id)
        contact = ports.contacts.get(contact_id)
        if workflow is None or contact is None:
            return  # no longer running, or the contact was erased meanwhile
        if kind == "due":
            why = item[3]
        else:
            last = self.last_event(workflow, contact, at)
            if last is None or last.at != item[3]:
                return  # an event came since: the timer counts from it
            why = f"no {workflow.trigger.value['event']} for {workflow.trigger.value['for']}"
        if any(enrollment.entered_at == at and enrollment.cause == why
               for enrollment in ports.enrollments.history(workflow_id, contact_id)):
            return  # done by an earlier run that stopped before its end (the same window listed again)
        self.try_enroll(workflow, contact, at, None, why)

    def on_event(self, event: Event) -> None:
        ports = self.ports
        contact = ports.contacts.get(event.contact)
        if contact is None:
            return  # erased since the event arrived
        suppress, withdraw = withdrawal(event.name, event.properties)
        if suppress and ports.contacts.suppress(contact, suppress, event.name):
            contact.suppressed.add(suppress)
        if withdraw:
            contact.fields[f"{withdraw}_consent"] = False
            ports.contacts.withdraw(contact, withdraw)
        ports.events.remember(contact, event)
        converted: set[str] = set()  # the workflows in which this event reached a goal
        for enrollment_id in ports.enrollments.active(contact.id):
            enrollment = ports.enrollments.get(enrollment_id)
            workflow = ports.workflows.of(enrollment) if enrollment is not None else None
            if enrollment is None or workflow is None:
                continue  # an enrollment that does not read back, a version that does not load
            if ports.workflows.paused(workflow.id):
                if event.name in self.listens(workflow):  # no one moves in a paused workflow: it has it on resume
                    ports.events.hold(event, enrollment)
                continue
            was = enrollment.converted
            self.handle(workflow, self.engine.deliver(workflow, enrollment, contact, event), contact)
            if enrollment.converted and not was:
                converted.add(workflow.id)
        self.late_goals(contact, event, converted)
        # A workflow takes contacts from events that happen after it was deployed, never from history.
        taking = [workflow for workflow in ports.workflows.taking() if self._takes(workflow, event.at)]
        for workflow in taking:
            trigger = workflow.trigger
            if trigger.kind == "event" and trigger.value == event.name:
                self.try_enroll(workflow, contact, event.at, event, event.name)
            elif trigger.kind == "inactivity" and trigger.value["event"] == event.name:
                self.schedule_inactivity(workflow, contact, event.at)
        for workflow in taking:
            if workflow.trigger.kind == "segment":
                self.check_segment(workflow, contact, event.at)

    def late_goals(self, contact: ContactState, event: Event, converted: set[str]) -> None:
        """The event as the goal of an enrollment that already ended (within the goal's `within`). One goal
        event converts one enrollment per workflow: the one in flight that it converted, else the latest ended
        one whose goal still counts. A paused workflow's ended enrollments hold its goal event (`release`)."""
        ports = self.ports
        for enrollment_id in reversed(ports.enrollments.converting(contact.id, event.at)):
            enrollment = ports.enrollments.get(enrollment_id)
            if enrollment is None or enrollment.workflow in converted:
                continue
            workflow = ports.workflows.of(enrollment)
            if workflow is None:
                continue
            if ports.workflows.paused(workflow.id):
                if workflow.goal is not None and workflow.goal.get("event") == event.name:
                    ports.events.hold(event, enrollment)
                continue
            if self._late_goal(workflow, enrollment, contact, event):
                converted.add(enrollment.workflow)

    def listens(self, workflow: Workflow) -> frozenset[str]:
        """The names of the events that can change an enrollment of the workflow once it is inside: its goal, its
        exit_on and its wait_for events (what `Engine.deliver` looks at); a paused workflow holds only those."""
        key = (workflow.id, workflow.version)
        names = self._listening.get(key)
        if names is None:
            found: set[Any] = {name for name, _ in workflow.exit_on}
            if workflow.goal is not None:
                found.add(workflow.goal.get("event"))
            found.update(step.value.get("event") for step in workflow.iter_steps()
                         if step.kind == "wait_for" and isinstance(step.value, dict))
            names = self._listening[key] = frozenset(name for name in found if isinstance(name, str))
        return names

    def _late_goal(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState, event: Event) -> bool:
        """The event handed to an ended enrollment (its goal may still count); whether it converted it."""
        outcome = self.engine.deliver(workflow, enrollment, contact, event)
        if outcome.log:
            self.ports.enrollments.save(enrollment)
            self.ports.journal.record(outcome.log)
        return enrollment.converted

    def release(self, event: Event, workflow_id: str, enrollment_ids: Sequence[str]) -> None:
        """Hand an event held while `workflow_id` was paused to the enrollments it was held for, at its own moment
        and as `on_event` would have then: the one in flight first, then the ended ones whose goal may count, the
        latest first; one goal event converts one enrollment of the workflow. While a version of theirs cannot be
        loaded, the event stays held (those enrollments wait for a fixed deploy, as their wake-ups do)."""
        ports = self.ports
        held: list[tuple[Enrollment, Workflow]] = []
        for enrollment_id in enrollment_ids:
            enrollment = ports.enrollments.get(enrollment_id)
            if enrollment is None:
                continue  # gone, or does not read back (failed as such): nothing to hand it to
            workflow = ports.workflows.of(enrollment)
            if workflow is None:
                return
            held.append((enrollment, workflow))
        ports.events.release(event, workflow_id)
        contact = ports.contacts.get(event.contact)
        if contact is None:
            return  # erased since the event came
        running = [pair for pair in held if not pair[0].ended]
        ended = sorted((pair for pair in held if pair[0].ended), key=lambda pair: (pair[0].entered_at, pair[0].id),
                       reverse=True)
        converted = False
        for enrollment, workflow in running:
            was = enrollment.converted
            self.handle(workflow, self.engine.deliver(workflow, enrollment, contact, event), contact)
            converted = converted or (enrollment.converted and not was)
        for enrollment, workflow in ended:
            if converted:
                break
            converted = not enrollment.converted and self._late_goal(workflow, enrollment, contact, event)

    def _takes(self, workflow: Workflow, at: datetime) -> bool:
        since = self.ports.workflows.since(workflow.id)
        return since is None or at >= since

    def segment_source(self, workflow: Workflow) -> str:
        """The expression of the workflow's segment trigger: the named segment's, or the inline one."""
        source = self.segments.get(workflow.trigger.value)
        return str(source.source if source is not None else workflow.trigger.value)

    def segment_candidates(self, workflow_id: str, at: datetime) -> list[str]:
        """The contacts a segment's first check looks at, in id order: those the segment may hold at `at`
        (`Contacts.matching`) and its members (who may have left it); every contact when the port cannot tell.
        The others would be checked to be out of it, as they were: nothing to do for them."""
        ports = self.ports
        workflow = ports.workflows.named(workflow_id)
        if workflow is None:
            return []  # no longer running: each check would do nothing
        found = ports.contacts.matching(self.segment_source(workflow), at)
        if found is None:
            return list(ports.contacts.ids())
        return sorted({*found, *ports.timers.members(workflow_id)})

    def check_segment(self, workflow: Workflow, contact: ContactState, at: datetime) -> None:
        expression = self.segment_source(workflow)
        scope = self.engine.scope(workflow, contact, at, at, {}, None)
        try:
            matches = bool(scope.evaluate(expression))
        except Exception as error:  # noqa: BLE001 - any evaluation error is the contact's failure, not ours
            self.ports.journal.record([LogEntry(at, contact.id, workflow.id, workflow.version, "trigger", "failed",
                                                f"segment {workflow.trigger.value}: {type(error).__name__}: {error}")])
            return
        timers = self.ports.timers
        before = timers.in_segment(workflow.id, contact.id)
        if matches != before:
            timers.set_segment(workflow.id, contact.id, matches)
        on = workflow.trigger.on
        if matches and not before and on in ("enter", "both"):
            self.try_enroll(workflow, contact, at, None, f"entered segment {workflow.trigger.value}")
        elif before and not matches and on in ("leave", "both"):
            self.try_enroll(workflow, contact, at, None, f"left segment {workflow.trigger.value}")

    def try_enroll(self, workflow: Workflow, contact: ContactState, at: datetime, event: Event | None,
                   why: str) -> None:
        journal = self.ports.journal
        try:
            admitted, reason = self.engine.admits(workflow, contact, at, event)
        except Exception as error:  # noqa: BLE001 - an expression that fails for this contact
            journal.record([LogEntry(at, contact.id, workflow.id, workflow.version, "trigger", "failed",
                                     f"entry condition: {type(error).__name__}: {error}")])
            return
        if not admitted:
            if reason:
                journal.record([LogEntry(at, contact.id, workflow.id, workflow.version, "trigger", "skip", reason)])
            return
        enrollments = self.ports.enrollments
        previous = enrollments.history(workflow.id, contact.id)
        refusal = reentry_refusal(workflow, previous, at)
        if refusal:
            journal.record([LogEntry(at, contact.id, workflow.id, workflow.version, "trigger", "skip", refusal)])
            return
        outcome = self.engine.enroll(workflow, contact, at, event, enrollments.new_id(workflow, contact, previous),
                                     why)
        enrollments.add(outcome.enrollment)
        self.handle(workflow, outcome, contact)

    # --- an outcome made real ------------------------------------------------------------------------

    def handle(self, workflow: Workflow, outcome: Outcome, contact: ContactState) -> None:
        """Make an outcome of the engine for `contact` real: render, record, answer pending steps, schedule the
        wake-up."""
        ports = self.ports
        enrollment = outcome.enrollment
        ports.enrollments.save(enrollment)
        effects = outcome.effects
        for effect in effects:  # the messages were made as the engine sent them (`_made`)
            kind = effect.kind
            if kind in ("update", "score", "lists"):
                ports.contacts.changed(contact)
            elif kind == "task":
                ports.outbox.task(effect)
        ports.journal.record(outcome.log)
        if effects:
            self._effects(workflow, contact, effects)
        if enrollment.state == PENDING and enrollment.pending:
            self._answer(workflow, enrollment, contact)
        elif enrollment.ended:
            return
        elif (wake := enrollment.wake_time) is not None:
            self.queue.push(wake, WAKE, ("wake", enrollment.id, wake))

    def _effects(self, workflow: Workflow, contact: ContactState, effects: list[Effect]) -> None:
        """What the effects cause: the workflows `start` enrolls into, and `contact_updated` for changes."""
        changed: list[str] = []
        previous: dict[str, Any] = {}
        changed_at = None
        for effect in effects:
            if effect.kind in ("update", "score", "lists"):
                changed.extend(_changed_fields(effect))
                for name, value in effect.data.get("previous", {}).items():
                    previous.setdefault(name, value)
                changed_at = effect.at
            elif effect.kind == "start":
                target = self.ports.workflows.named(effect.data["workflow"])
                if target is not None:
                    self.try_enroll(target, contact, effect.at, None, f"started by {workflow.id}")
        if changed and changed_at is not None:  # a change made by a step is a contact_updated event
            event = Event(contact.id, "contact_updated", changed_at, {"changed": sorted(set(changed)),
                                                                      "previous": previous})
            self.ports.events.emit(event)
            self.push_event(event)

    def _answer(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState) -> None:
        """A coupon or webhook step waits on an answer: from the answers port, now or later."""
        pending = enrollment.pending
        if pending is None:  # called only for an enrollment waiting on an answer
            return
        at = datetime.fromisoformat(pending["at"])
        if pending["kind"] == "coupon":
            expires = pending.get("expires_at")
            answer = self.ports.answers.coupon(pending["pool"], contact.id, at,
                                               datetime.fromisoformat(expires) if expires else None)
        else:
            answer = self.ports.answers.webhook(enrollment, pending["request"], at)
            if answer is Later.LATER:
                return  # the enrollment waits in `pending` until the answer is recorded
        self.handle(workflow, self.engine.resume(workflow, enrollment, contact, answer, at), contact)

    def _made(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState, effect: Effect) -> str | None:
        """Render the message a send asks for, into the outbox, as the engine sends it (`Engine.on_send`); or
        say why it cannot be made (a template that fails: the engine fails the enrollment at the send)."""
        try:
            message = self.renderer.render(effect, contact, self.engine.settings.contact_fields)
        except MautoError as error:
            return f"template {effect.data['template']}: {error}"
        sent = self.ports.outbox.message(workflow, enrollment, contact, message)
        if sent is not None:
            self.ports.events.emit(sent)
            self.push_event(sent)
        return None


def reentry_refusal(workflow: Workflow, previous: Sequence[Entry], at: datetime) -> str | None:
    """Why the contact may not enter again now (None: they may). A contact is never in a workflow twice at once."""
    if any(not enrollment.ended for enrollment in previous):
        return "already in this workflow"
    if not previous:
        return None
    reentry = workflow.reentry
    if reentry == "never":
        return "entered before (reentry: never)"
    if isinstance(reentry, timedelta):
        last = max(enrollment.entered_at for enrollment in previous)
        if at < last + reentry:
            return f"entered {last.isoformat()}; reentry after {workflow.document.data['reentry']['after']}"
    return None


def _changed_fields(effect: Effect) -> list[str]:
    if effect.kind == "score":
        return ["score"]
    if effect.kind == "lists":
        return ["lists"]
    data = effect.data
    fields = list(data.get("set", {})) + list(data.get("unset", []))
    if data.get("add_tags") or data.get("remove_tags"):
        fields.append("tags")
    return fields
