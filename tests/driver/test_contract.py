"""The ports' contract: the same cases against every set of ports the loop runs on (memory, SQLite), as
APScheduler's tests run against every data store. A new set (PostgreSQL) is done when it passes these.

Each set is built over the daemon harness's project (the `promo` and `hooked` workflows; contacts ana, ben and
cy) and handed out as a `PortSet`: the ports, plus what the test needs to look behind them (`settle`: write
what the batch holds and forget what was loaded, so that what follows is read back; the messages, tasks, log
entries, webhook calls and failures the ports were given)."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mauto.daemon.report import TickReport
from mauto.driver.loop import Driver
from mauto.driver.memory import memory_ports
from mauto.driver.ports import Later, Ports
from mauto.driver.sqlite import Batch, SqliteWorkflows, sqlite_ports
from mauto.engine.interpreter import Engine, Settings
from mauto.engine.records import ContactState, Event
from mauto.engine.state import Effect, Enrollment, LogEntry
from mauto.messages import MessageRenderer
from mauto.store import releases, runtime
from mauto.workflow.loader import load, parse
from mauto.workflow.model import Workflow, build
from tests.daemon.harness import T0, Daemon
from tests.servers import HttpServer, SmtpServer

CONTACTS = {"ana": {"email": "ana@example.com", "email_consent": True, "first_name": "Ana"},
            "ben": {"email": "ben@example.com", "email_consent": True, "first_name": "Ben"},
            "cy": {"email": "cy@example.com", "email_consent": False, "first_name": "Cy"}}


class PortSet:
    def __init__(self, name: str, ports: Ports, daemon: Daemon) -> None:
        self.name, self.ports, self.daemon = name, ports, daemon
        self.messages: list[Any] = []
        self.tasks: list[Effect] = []
        self.entries: list[LogEntry] = []

    def settle(self) -> None:
        """Write what is pending and forget what was loaded (nothing to do in memory)."""

    def calls(self) -> list[str]:
        return []

    def unhandled(self, name: str) -> list[Event]:
        """The events of that name a later run would still handle."""
        return []

    def failures(self) -> list[str]:
        return [entry.detail for entry in self.entries if entry.kind == "failed"]

    def workflow(self, workflow_id: str) -> Workflow:
        found = self.ports.workflows.named(workflow_id)
        assert found is not None
        return found

    # A workflow added, paused and resumed (as `mauto deploy`, `pause` and `resume` would), and the events held:
    # the ports are made anew after each (a tick reads the workflows' states when it begins).

    def add(self, source: str) -> None:
        raise NotImplementedError

    def set_paused(self, workflow_id: str, paused: bool) -> None:
        raise NotImplementedError

    def held_events(self) -> list[tuple[str, str, str]]:
        """(event name, workflow, enrollment) of the events held, in the order they came."""
        raise NotImplementedError

    def push_held(self, driver: Driver) -> None:
        """Queue the events held for workflows no longer paused, as a tick does."""
        raise NotImplementedError


class MemorySet(PortSet):
    def __init__(self, daemon: Daemon) -> None:
        every = [build(load(path)) for path in sorted((daemon.root / "workflows").glob("*.yaml"))]
        contacts = [ContactState(contact_id, dict(fields)) for contact_id, fields in CONTACTS.items()]
        held = memory_ports(contacts, every, every, {"GIFT": ["A1", "A2"]}, {daemon.http.url("/crm"): {"id": "crm-1"}},
                            lambda entries: self.entries.extend(entries),
                            lambda workflow, enrollment, contact, message: self.messages.append(message))
        held.outbox.on_task = lambda effect: self.tasks.append(effect)
        self.memory = held
        super().__init__("memory", held.ports(), daemon)

    def add(self, source: str) -> None:
        workflow = build(parse(source, "added.yaml"))
        self.memory.workflows.running.append(workflow)
        self.memory.workflows.registry[workflow.id] = workflow

    def set_paused(self, workflow_id: str, paused: bool) -> None:
        (self.memory.workflows.paused_ids.add if paused else self.memory.workflows.paused_ids.discard)(workflow_id)

    def held_events(self) -> list[tuple[str, str, str]]:
        return [(event.name, workflow, enrollment) for event, workflow, enrollment in self.memory.events.held]

    def push_held(self, driver: Driver) -> None:
        groups: dict[tuple[int, str], tuple[Event, list[str]]] = {}
        for event, workflow, enrollment in self.memory.events.held:
            if not self.memory.workflows.paused(workflow):
                groups.setdefault((id(event), workflow), (event, []))[1].append(enrollment)
        for (_, workflow), (event, enrollments) in groups.items():
            driver.push_held(event, workflow, enrollments)


class SqliteSet(PortSet):
    def __init__(self, daemon: Daemon) -> None:
        store = daemon.store
        self.report = TickReport(T0)
        self.logged: list[tuple[str, dict]] = []
        self.batch = Batch(store, T0, self.report, lambda kind, data: self.logged.append((kind, data)))
        workflows = SqliteWorkflows(self.batch, lambda *args: None)
        project = daemon.project
        self.held = sqlite_ports(self.batch, project.contact_fields, project.timezone, workflows, lambda *args: None)
        super().__init__("sqlite", self.held.ports(), daemon)
        store.db.execute("BEGIN IMMEDIATE" if store.dialect == "sqlite" else "BEGIN")  # rolled back at the end
        store.db.execute("INSERT INTO coupons (pool, code, loaded_at) VALUES ('GIFT', 'A1', ?), ('GIFT', 'A2', ?)",
                         [self.batch.at, self.batch.at])

    def settle(self) -> None:
        self.messages.extend(self.batch.messages)
        self.tasks.extend(self.batch.tasks)  # type: ignore[arg-type]
        self.entries.extend(self.batch.entries)
        self.batch.flush()
        self.held.forget()

    def calls(self) -> list[str]:
        return [row[0] for row in self.daemon.store.db.execute("SELECT key FROM calls ORDER BY id")]

    def failures(self) -> list[str]:
        return [row[0] for row in self.daemon.store.db.execute("SELECT reason FROM failures ORDER BY id")]

    def unhandled(self, name: str) -> list[Event]:
        found = runtime.unprocessed_events(self.daemon.store.db, T0 + timedelta(days=1))
        return [event for _, event in found if isinstance(event, Event) and event.name == name]

    def _anew(self) -> None:
        self.settle()
        self.held.workflows = SqliteWorkflows(self.batch, lambda *args: None)
        self.ports = self.held.ports()

    def add(self, source: str) -> None:
        document = parse(source, "added.yaml")
        workflow = build(document)
        releases.insert_version(self.daemon.store.db, workflow.id, workflow.version, workflow.content_hash, source,
                                document.data, self.batch.at, None, None)
        releases.start(self.daemon.store.db, workflow.id, workflow.version, "2026-11-20T08:00:00.000000+00:00")
        self._anew()

    def set_paused(self, workflow_id: str, paused: bool) -> None:
        releases.set_state(self.daemon.store.db, workflow_id, "paused" if paused else "active", self.batch.at)
        self._anew()

    def held_events(self) -> list[tuple[str, str, str]]:
        return [tuple(row) for row in self.daemon.store.db.execute(
            "SELECT e.name, h.workflow, h.enrollment FROM held_events h JOIN events e ON e.seq = h.seq "
            "ORDER BY h.seq, h.enrollment")]

    def push_held(self, driver: Driver) -> None:
        for seq, workflow, enrollments, event in runtime.held_events(self.daemon.store.db):
            assert isinstance(event, Event)
            self.held.events.track(event, seq)
            driver.push_held(event, workflow, enrollments)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def ports(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PortSet]:
    """The ports of each set over the daemon harness: the third is the SQLite ports' code over a PostgreSQL
    database (tests/pg.py), its SQL translated by `mauto.store.postgres.translate`."""
    url = request.getfixturevalue("pg_cluster").url() if request.param == "postgresql" else None
    with SmtpServer() as smtp, HttpServer() as http:
        harness = Daemon(tmp_path, smtp, http, url)
        try:
            if request.param == "memory":
                yield MemorySet(harness)
                return
            made = SqliteSet(harness)
            yield made
            harness.store.db.execute("ROLLBACK")
        finally:
            harness.store.close()


def _enrollment(ports: PortSet, contact: str, entered: int = 0) -> Enrollment:
    contact_state = ports.ports.contacts.get(contact)
    assert contact_state is not None
    workflow = ports.workflow("promo")
    enrollments = ports.ports.enrollments
    previous = enrollments.history("promo", contact)
    enrollment = Enrollment(enrollments.new_id(workflow, contact_state, previous), "promo", 1, contact,
                            T0 + timedelta(days=entered), position="steps.0")
    enrollments.add(enrollment)
    return enrollment


# --- contacts -------------------------------------------------------------------------------------------


def test_a_contact_is_one_object_per_id_and_an_unknown_one_is_none(ports: PortSet) -> None:
    contacts = ports.ports.contacts
    ana = contacts.get("ana")
    assert ana is not None and ana is contacts.get("ana")
    assert ana.fields["email"] == "ana@example.com" and ana.fields["first_name"] == "Ana"
    assert contacts.get("nobody") is None
    assert sorted(contacts.ids()) == ["ana", "ben", "cy"]
    assert sorted(contact.id for contact in contacts.every()) == ["ana", "ben", "cy"]


def test_a_changed_contact_reads_back_changed(ports: PortSet) -> None:
    contacts = ports.ports.contacts
    ana = contacts.get("ana")
    assert ana is not None
    ana.fields["first_name"] = "Anna"
    contacts.changed(ana)
    ports.settle()
    again = contacts.get("ana")
    assert again is not None and again.fields["first_name"] == "Anna"


def test_consent_withdrawn_reads_back_withdrawn(ports: PortSet) -> None:
    contacts = ports.ports.contacts
    ana = contacts.get("ana")
    assert ana is not None
    ana.fields["email_consent"] = False  # the loop sets it on the contact, then tells the port
    contacts.withdraw(ana, "email")
    ports.settle()
    again = contacts.get("ana")
    assert again is not None and again.fields["email_consent"] is False


def test_an_address_is_suppressed_once(ports: PortSet) -> None:
    contacts = ports.ports.contacts
    ana = contacts.get("ana")
    assert ana is not None
    assert contacts.suppress(ana, "email", "email_bounced") is True
    ana.suppressed.add("email")
    assert contacts.suppress(ana, "email", "email_bounced") is False


# --- enrollments ------------------------------------------------------------------------------------------


def test_an_enrollment_added_is_found_by_id_history_and_contact(ports: PortSet) -> None:
    enrollment = _enrollment(ports, "ana")
    enrollments = ports.ports.enrollments
    assert enrollments.get(enrollment.id) is enrollment
    assert enrollments.active("ana") == [enrollment.id]
    assert [item.id for item in enrollments.history("promo", "ana")] == [enrollment.id]
    assert enrollments.get("promo:nobody:1") is None
    ports.settle()
    back = enrollments.get(enrollment.id)
    assert back is not None and back.to_dict() == enrollment.to_dict()
    assert enrollments.active("ana") == [enrollment.id]


def test_an_ended_enrollment_leaves_the_active_list_but_stays_in_the_history(ports: PortSet) -> None:
    enrollments = ports.ports.enrollments
    first = _enrollment(ports, "ana")
    first.state, first.ended_at = "completed", T0
    enrollments.save(first)
    assert enrollments.active("ana") == []
    ports.settle()
    assert enrollments.active("ana") == []
    history = enrollments.history("promo", "ana")
    assert [item.entered_at for item in history] == [T0] and all(item.ended for item in history)
    second = _enrollment(ports, "ana", entered=1)
    assert second.id != first.id
    assert [item.entered_at for item in enrollments.history("promo", "ana")] == [T0, T0 + timedelta(days=1)]


def test_an_ended_enrollment_whose_goal_still_counts_is_listed_until_its_window_closes(ports: PortSet) -> None:
    enrollments = ports.ports.enrollments
    open_goal, closed = _enrollment(ports, "ana"), _enrollment(ports, "ana", entered=1)
    converted, running = _enrollment(ports, "ana", entered=2), _enrollment(ports, "ana", entered=3)
    for enrollment, until in ((open_goal, 7), (closed, None), (converted, 9)):
        enrollment.state, enrollment.ended_at = "completed", T0 + timedelta(days=4)
        enrollment.goal_until = T0 + timedelta(days=until) if until else None
        enrollments.save(enrollment)
    converted.converted, converted.converted_at = True, T0 + timedelta(days=5)
    enrollments.save(converted)
    assert enrollments.converting("ana", T0 + timedelta(days=6)) == [open_goal.id]  # in the batch
    ports.settle()
    assert enrollments.converting("ana", T0 + timedelta(days=6)) == [open_goal.id]  # and read back
    assert enrollments.converting("ana", T0 + timedelta(days=7)) == [open_goal.id]  # `within` includes its end
    assert enrollments.converting("ben", T0 + timedelta(days=6)) == []
    assert running.id not in enrollments.converting("ana", T0 + timedelta(days=6))
    assert enrollments.converting("ana", T0 + timedelta(days=7, seconds=1)) == []


def test_the_active_list_is_a_copy(ports: PortSet) -> None:
    enrollment = _enrollment(ports, "ana")
    listed = ports.ports.enrollments.active("ana")
    listed.clear()
    assert ports.ports.enrollments.active("ana") == [enrollment.id]


# --- events, outbox, answers -------------------------------------------------------------------------------


def test_a_late_event_lands_in_its_place_in_the_history(ports: PortSet) -> None:
    ana = ports.ports.contacts.get("ana")
    assert ana is not None
    events = ports.ports.events
    for hours in (1, 3, 2):
        events.remember(ana, Event("ana", "viewed", T0 + timedelta(hours=hours)))
    assert [event.at for event in ana.events] == [T0 + timedelta(hours=hours) for hours in (1, 2, 3)]


def test_an_emitted_event_handled_is_not_handled_again(ports: PortSet) -> None:
    event = Event("ana", "contact_updated", T0, {"changed": ["score"], "previous": {}})
    ports.ports.events.emit(event)
    ports.ports.events.handled(event)
    ports.settle()
    assert ports.unhandled("contact_updated") == []


def test_an_emitted_event_not_handled_yet_is_still_to_handle(ports: PortSet) -> None:
    event = Event("ana", "contact_updated", T0, {"changed": ["score"], "previous": {}})
    ports.ports.events.emit(event)
    ports.settle()
    if ports.name == "sqlite":  # in memory, the loop's queue holds it: nothing outlives the run
        assert [found.name for found in ports.unhandled("contact_updated")] == ["contact_updated"]


def test_coupons_are_given_once_each_then_none(ports: PortSet) -> None:
    answers = ports.ports.answers
    codes = [answers.coupon("GIFT", contact, T0) for contact in ("ana", "ben", "cy")]
    assert sorted(codes[:2]) == ["A1", "A2"] and codes[2] is None
    assert answers.coupon("NO-SUCH-POOL", "ana", T0) is None


def test_a_webhook_answers_now_or_is_queued_to_answer_later(ports: PortSet) -> None:
    enrollment = _enrollment(ports, "ana")
    enrollment.position = "steps.0"
    request = {"method": "POST", "url": ports.daemon.http.url("/crm"), "headers": {}, "body": "{}", "retries": 2}
    answer = ports.ports.answers.webhook(enrollment, request, T0)
    if answer is Later.LATER:
        ports.settle()
        assert ports.calls() == [f"{enrollment.id}:steps.0:1"]
    else:
        assert answer == {"id": "crm-1"} and ports.calls() == []


# --- timers, workflows, journal, failures ------------------------------------------------------------------


def test_an_inactivity_timer_and_a_segment_membership_read_back(ports: PortSet) -> None:
    timers = ports.ports.timers
    assert timers.inactive_since("promo", "ana") is None and timers.in_segment("promo", "ana") is False
    timers.set_inactive("promo", "ana", T0, T0 + timedelta(days=3))
    timers.set_segment("promo", "ana", True)
    ports.settle()
    assert timers.inactive_since("promo", "ana") == T0 and timers.in_segment("promo", "ana") is True
    timers.set_segment("promo", "ana", False)
    ports.settle()
    assert timers.in_segment("promo", "ana") is False


def test_workflows_taking_named_and_of_an_enrollment(ports: PortSet) -> None:
    workflows = ports.ports.workflows
    assert sorted(workflow.id for workflow in workflows.taking()) == ["hooked", "promo"]
    promo = workflows.named("promo")
    assert promo is not None and promo.version == 1 and workflows.named("nope") is None
    assert workflows.of(_enrollment(ports, "ana")) is not None


def test_log_entries_are_kept_in_order(ports: PortSet) -> None:
    entries = [LogEntry(T0, "ana", "promo", 1, "hello", "enter", "signed_up"),
               LogEntry(T0, "ana", "promo", 1, "hello", "send", "", "email", "promo/hello")]
    ports.ports.journal.record(entries)
    ports.settle()
    assert [(entry.kind, entry.step) for entry in ports.entries] == [("enter", "hello"), ("send", "hello")]


def test_a_trigger_that_cannot_be_listed_is_a_failure_not_an_error(ports: PortSet) -> None:
    ports.ports.failures.trigger(ValueError("no such day"), "promo", "ana", T0)
    ports.settle()
    assert ports.failures() == ["listing the trigger: ValueError: no such day"]


# --- the loop over each set --------------------------------------------------------------------------------


def test_the_same_loop_gives_the_same_steps_over_every_set(ports: PortSet) -> None:
    """An event, the wait of a day, the second email: the loop's log over these ports."""
    project = ports.daemon.project
    engine = Engine(Settings.from_project(project))
    driver = Driver(engine, ports.ports, MessageRenderer(project, secret="k"), project.segments,
                    T0 + timedelta(days=2))
    event = Event("ana", "signed_up", T0)
    driver.push_event(event)
    while driver.queue:
        at, item = driver.queue.pop()
        driver.process(at, item)
    ports.settle()
    steps = [(entry.at - T0, entry.step, entry.kind) for entry in ports.entries]
    assert steps == [(timedelta(0), "trigger", "enter"), (timedelta(0), "hello", "send"),
                     (timedelta(0), "2", "wait"), (timedelta(days=1), "again", "send"),
                     (timedelta(days=1), "end", "complete")]
    templates = [message["template"] if isinstance(message, dict) else message.template
                 for message in ports.messages]
    assert templates == ["promo/hello", "promo/again"]


# --- a paused workflow: it takes no one, and its enrollments hold the events that come for them --------------

WATCH = """\
id: watch
version: 1
name: Watch
category: marketing
trigger: {event: signed_up}
goal: {event: bought, within: 30d}
steps:
  - id: hello
    email: promo/hello
  - id: opened
    wait_for: {event: email_opened, timeout: 3d}
    on_event:
      - id: thanks
        email: promo/thanks
"""


def _run(ports: PortSet, *events: Event, held: bool = False) -> None:
    """The loop over the ports as they are now, from these events (and the events held, when `held`)."""
    project = ports.daemon.project
    driver = Driver(Engine(Settings.from_project(project)), ports.ports, MessageRenderer(project, secret="k"),
                    project.segments, T0 + timedelta(hours=12))
    if held:
        ports.push_held(driver)
    for event in events:
        ports.ports.events.emit(event)  # over the store: a row of its own, as an event ingested has
        driver.push_event(event)
    while driver.queue and driver.queue.first()[0] < driver.end:
        at, item = driver.queue.pop()
        driver.process(at, item)
    ports.settle()


def test_a_paused_workflow_takes_no_one_and_its_enrollments_still_load(ports: PortSet) -> None:
    enrollment = _enrollment(ports, "ana")
    ports.settle()
    assert ports.ports.workflows.paused("promo") is False
    ports.set_paused("promo", True)
    workflows = ports.ports.workflows
    assert workflows.paused("promo") is True and workflows.paused("hooked") is False
    assert [workflow.id for workflow in workflows.taking()] == ["hooked"] and workflows.named("promo") is None
    back = ports.ports.enrollments.get(enrollment.id)
    assert back is not None and workflows.of(back) is not None
    ports.set_paused("promo", False)
    assert ports.ports.workflows.paused("promo") is False and ports.ports.workflows.named("promo") is not None


def test_an_event_held_for_an_enrollment_is_kept_until_released(ports: PortSet) -> None:
    enrollment = _enrollment(ports, "ana")
    event = Event("ana", "bought", T0)
    events = ports.ports.events
    events.emit(event)
    events.hold(event, enrollment)
    ports.settle()
    assert ports.held_events() == [("bought", "promo", enrollment.id)]
    events.release(event, "promo")
    ports.settle()
    assert ports.held_events() == []


def test_the_loop_holds_a_paused_workflows_events_and_hands_them_over_on_resume(ports: PortSet) -> None:
    """ana waits in `watch` for the opening of its welcome; `watch` is paused; the opening comes (and an event
    `watch` does not listen to): held, nothing sent; resumed, the opening ends the wait at its own moment."""
    ports.add(WATCH)
    _run(ports, Event("ana", "signed_up", T0))
    [watching] = [item for item in ports.ports.enrollments.active("ana") if item.startswith("watch:")]
    ports.set_paused("watch", True)
    opened = T0 + timedelta(hours=1)
    _run(ports, Event("ana", "email_opened", opened), Event("ana", "viewed", opened))
    assert ports.held_events() == [("email_opened", "watch", watching)]
    enrollment = ports.ports.enrollments.get(watching)
    assert enrollment is not None and (enrollment.state, enrollment.position) == ("waiting", "steps.1")
    ports.set_paused("watch", False)
    _run(ports, held=True)
    assert ports.held_events() == []
    templates = [message["template"] if isinstance(message, dict) else message.template
                 for message in ports.messages]
    assert sorted(templates) == ["promo/hello", "promo/hello", "promo/thanks"]
    assert [(entry.at, entry.step, entry.kind) for entry in ports.entries if entry.workflow == "watch"][-3:] == [
        (opened, "opened", "event"), (opened, "thanks", "send"), (opened, "end", "complete")]


def test_an_enrollment_id_names_its_workflow_and_each_entry_has_its_own(ports: PortSet) -> None:
    first = _enrollment(ports, "ana")
    first.state, first.ended_at = "completed", T0
    ports.ports.enrollments.save(first)
    second = _enrollment(ports, "ana", entered=1)
    assert first.id.startswith("promo:") and second.id.startswith("promo:") and first.id != second.id


# --- audiences: the contacts a segment may hold, those a date trigger may come due for ------------------------

VIPS = """\
id: vips
version: 1
name: VIPs
category: marketing
trigger: {segment: "contact.first_name in ['Ana', 'Cy']"}
steps:
  - id: hello
    email: promo/hello
"""


def test_matching_holds_every_contact_a_segment_may_hold_and_those_changed_in_memory(ports: PortSet) -> None:
    """None (the loop checks every contact) or at least the contacts the expression is true for, as `get` reads
    them, and every contact held in memory; over a store the query's, exactly: ben is not read."""
    contacts = ports.ports.contacts
    expression = "contact.first_name in ['Ana', 'Cy']"
    found = contacts.matching(expression, T0)
    assert found is None or {"ana", "cy"} <= set(found)
    if ports.name == "sqlite":  # the SQLite ports' code, over SQLite and over PostgreSQL
        assert sorted(found or []) == ["ana", "cy"]
        assert contacts.matching("contact.first_name|lower == 'ana'", T0) is None  # not in SQL: every contact may
    ben = contacts.get("ben")
    assert ben is not None
    ben.fields["first_name"] = "Ana"
    contacts.changed(ben)  # not written until the batch is: the store does not have it yet
    found = contacts.matching(expression, T0)
    assert found is None or {"ana", "ben", "cy"} <= set(found)


def test_matching_counts_the_events_a_contact_is_read_with(ports: PortSet) -> None:
    """An event not handled yet is not in the history `get` gives (a tick has not handled it): nor in matching's
    answer over a store; handled, it is."""
    contacts, events = ports.ports.contacts, ports.ports.events
    event = Event("ben", "ordered", T0)
    events.emit(event)
    ports.settle()
    later = T0 + timedelta(hours=1)
    found = contacts.matching("has_event('ordered')", later)
    assert found is None or ports.name == "sqlite" and list(found) == []
    events.handled(event)
    ports.settle()
    found = contacts.matching("has_event('ordered')", later)
    assert found is None or list(found) == ["ben"]


def test_segment_members_are_the_contacts_set_inside(ports: PortSet) -> None:
    timers = ports.ports.timers
    assert list(timers.members("promo")) == []
    for workflow, contact in (("promo", "cy"), ("promo", "ana"), ("hooked", "ben")):
        timers.set_segment(workflow, contact, True)
    ports.settle()
    assert sorted(timers.members("promo")) == ["ana", "cy"] and list(timers.members("hooked")) == ["ben"]
    timers.set_segment("promo", "ana", False)
    ports.settle()
    assert list(timers.members("promo")) == ["cy"]


def test_every_near_gives_every_contact_a_date_trigger_comes_due_for(ports: PortSet) -> None:
    """At least every contact date_due gives a moment in the window for, with the fields `every` gives; over a
    store, no other (the harness's contacts were all created at DEPLOYED)."""
    from zoneinfo import ZoneInfo

    from mauto.engine.triggers import date_due
    from tests.daemon.harness import DEPLOYED

    contacts = ports.ports.contacts
    spec = {"field": "created_at", "every": "once", "offset": "7d"}
    for start, expected in ((DEPLOYED + timedelta(days=7, minutes=-1), ["ana", "ben", "cy"]),
                            (DEPLOYED + timedelta(days=100), [])):
        end = start + timedelta(minutes=2)
        near = {contact.id: contact.fields for contact in contacts.every_near(spec, start, end)}
        for contact in contacts.every():
            if date_due(spec, contact.fields.get("created_at"), ZoneInfo("UTC"), start, end):
                assert near.get(contact.id) == contact.fields
        if ports.name == "sqlite":
            assert sorted(near) == expected


def test_a_segments_first_check_looks_at_the_candidates_and_enters_the_same_contacts(ports: PortSet) -> None:
    """The first check of a segment trigger over each set: the contacts the segment may hold and its members
    (ben was one, and left it) are checked, every contact when the ports cannot tell; the same contacts enter."""
    ports.add(VIPS)
    ports.ports.timers.set_segment("vips", "ben", True)
    ports.settle()
    project = ports.daemon.project
    driver = Driver(Engine(Settings.from_project(project)), ports.ports, MessageRenderer(project, secret="k"),
                    project.segments, T0 + timedelta(hours=1))
    assert driver.segment_candidates("vips", T0) == ["ana", "ben", "cy"]
    ports.ports.timers.set_segment("vips", "ben", False)
    expected = ["ana", "cy"] if ports.name == "sqlite" else ["ana", "ben", "cy"]
    assert driver.segment_candidates("vips", T0) == expected
    ports.ports.timers.set_segment("vips", "ben", True)
    driver.schedule(ports.workflow("vips"), T0, T0, first=True)
    while driver.queue:
        at, item = driver.queue.pop()
        driver.process(at, item)
    ports.settle()
    assert [(entry.contact, entry.step, entry.kind) for entry in ports.entries if entry.workflow == "vips"] == [
        ("ana", "trigger", "enter"), ("ana", "hello", "send"), ("ana", "end", "complete"),
        ("cy", "trigger", "enter"), ("cy", "hello", "suppressed"), ("cy", "end", "complete")]
    assert sorted(ports.ports.timers.members("vips")) == ["ana", "cy"] and ports.ports.timers.begun("vips")
