"""`mauto simulate`: the shared loop on a virtual clock, over memory ports and the sample data.

The clock jumps from one due moment to the next (an event, a wake-up, a date or schedule trigger), so a month
runs in an instant. The loop is `mauto.driver.Driver`, the one the daemon's tick runs over the store; only
the ports (`mauto.driver.memory`), the clock and the channels differ.
"""
from __future__ import annotations

import gc
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path

from mauto.config import Project
from mauto.driver.loop import Driver
from mauto.driver.memory import memory_ports
from mauto.driver.queue import EVENT
from mauto.engine.interpreter import Engine, Settings
from mauto.engine.records import ContactState, Event
from mauto.engine.state import FAILED, Enrollment, LogEntry
from mauto.engine.winners import Tally, after, describe, winner_splits
from mauto.errors import MautoError, printable
from mauto.messages import MessageRenderer, RenderedMessage
from mauto.simulate.result import Funnel, SimulationResult, count
from mauto.simulate.samples import DEFAULT_SAMPLES, Samples, load_contacts, load_events, load_mapping
from mauto.workflow.model import Workflow


def named_in(project: Project, workflows: list[Workflow]) -> Callable[[str], bool]:
    """Whether an event name is written anywhere an expression could ask for it (`has_event`,
    `event_count`, a trigger, `wait_for`, `exit_on`, a goal, a segment, a template): the workflows' text,
    the segments' and the templates'. A name written nowhere is read by nothing; one written anywhere, even in
    a comment, is kept (the test is by text, on purpose: it may keep too much, never too little)."""
    texts = [workflow.document.text for workflow in workflows]
    texts += [str(getattr(segment, "source", segment)) for segment in project.segments.values()]
    for path in sorted(project.templates_dir.rglob("*")):
        try:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:  # a folder, or a file gone: nothing written there
            continue
    corpus = "\n".join(texts)
    known: dict[str, bool] = {}

    def read(name: str) -> bool:
        found = known.get(name)
        if found is None:
            found = known[name] = name in corpus
        return found

    return read


class Simulation:
    """One run: contacts, events and workflows on a virtual clock from `start` to `end`.

    `keep_timeline=False` keeps no timeline and no messages (the funnels are still counted), and lets the
    run forget what the rules no longer need (ended enrollments but for their entry time, sent messages
    older than the longest frequency cap): a year's horizon holds no more than a month's."""

    def __init__(self, project: Project, workflows: list[Workflow], samples: Samples, start: datetime,
                 end: datetime, all_workflows: Iterable[Workflow] = (), keep_timeline: bool = True,
                 renderer: MessageRenderer | None = None, contact_filter: str | None = None,
                 on_message: Callable[[RenderedMessage], None] | None = None) -> None:
        self.project = project
        self.engine = Engine(Settings.from_project(project))
        self.workflows = workflows
        self.samples = samples
        self.start, self.end = start, end
        self.keep_timeline = keep_timeline
        self.contact_filter = contact_filter
        self.on_message = on_message
        self.timeline: list[LogEntry] = []
        self.funnels: dict[str, Funnel] = {workflow.id: Funnel() for workflow in workflows}
        self.messages: list[RenderedMessage] = []
        self.reached: dict[str, dict[str, set]] = {workflow.id: {} for workflow in workflows}  # step -> contacts
        every = list(all_workflows)
        window = None if keep_timeline else self._longest_cap([*every, *workflows])
        named = named_in(project, [*every, *workflows])
        read = None if keep_timeline else named
        # `email_sent` / `sms_sent` are made only where something may read them (a wait_for, a trigger, ...).
        sent = frozenset(channel for channel in ("email", "sms") if named(f"{channel}_sent"))
        self.ports = memory_ports(samples.contacts, workflows, every, samples.coupons, samples.webhooks,
                                  self.record, self.rendered, keep_ended=keep_timeline, window=window, read=read,
                                  sent=sent)
        self.coming: deque[tuple[Event, int]] = deque()  # the sample events not yet queued, with their places
        self.driver = Driver(self.engine, self.ports.ports(), renderer or MessageRenderer(project), project.segments,
                             end)
        # Splits that pick their winner: tallied from the log, decided at each midnight UTC (mauto.engine.winners).
        self.tallies: dict[tuple[str, str], Tally] = {
            (split.workflow, split.split): Tally(split) for workflow in workflows for split in winner_splits(workflow)}
        self.goal_tallies: dict[str, list[Tally]] = defaultdict(list)
        for tally in self.tallies.values():
            self.goal_tallies[tally.split.workflow].append(tally)
        self.winners: list[dict] = []

    def _longest_cap(self, workflows: list[Workflow]) -> timedelta:
        """The longest window a frequency cap looks back over, in any workflow of the run (0: no caps)."""
        windows = [cap.per for workflow in workflows for cap in (self.engine.rules(workflow).caps or {}).values()]
        return max(windows, default=timedelta(0))

    def run(self) -> SimulationResult:
        self.prepare()
        queue, end = self.driver.queue, self.end
        # The run makes no reference cycles to speak of (a failed item's traceback at most), while the
        # collector's passes walked the samples and every record again and again (9% of a 100,000-contact
        # run): off during the run, as during a lint; one young-generation pass at its end.
        collecting = gc.isenabled()
        gc.disable()
        decide_at = after(self.start) if self.tallies else None
        try:
            while queue or self.coming:
                self._feed()
                at, item = queue.pop()
                if at >= end:
                    break
                while decide_at is not None and at >= decide_at:  # each midnight passed: what came before it
                    self.decide(decide_at)
                    decide_at += timedelta(days=1)
                try:
                    self.driver.process(at, item)
                except Exception as error:  # noqa: BLE001 - one item's failure is shown, the others go on
                    self.item_failed(at, item, error)
        finally:
            if collecting:
                gc.enable()
                gc.collect(0)
        contacts = self.ports.contacts.by_id
        zones = {contact.id: self.engine.contact_zone(contact) for contact in contacts.values()}
        enrollments = self.ports.enrollments.every()
        return SimulationResult(self.start, self.end, self.timeline, self.funnels, self.messages, contacts,
                                zones, enrollments, self.winners)

    def decide(self, at: datetime) -> None:
        """The splits that pick their winner, at the midnight `at`, from what the run logged before it."""
        for key, tally in self.tallies.items():
            if key in self.engine.winners:
                continue
            decision = tally.decide()
            if decision is not None:
                self.engine.winners[key] = decision.variant
                self.winners.append(describe(tally.split, decision, at))

    def prepare(self) -> None:
        """Queue the sample events (those before the start are history: seen, never triggering) and what each
        workflow's trigger has due in the run's window."""
        contacts = self.ports.contacts
        window = []
        for event in self.samples.events:
            if event.at < self.start:
                contact = contacts.get(event.contact)
                if contact is not None:  # history: has_event and inactivity see it, it triggers nothing
                    self.ports.events.remember(contact, event)
            elif event.at < self.end:
                window.append(event)
        # Fed to the queue as the clock reaches them (`_feed`), not all at once: a year of events would sit
        # in the queue from the start. Each keeps the place it would have had if queued first: the same moment
        # as another item, it comes before it, and before a later sample event of that moment.
        window.sort(key=lambda event: event.at.timestamp())
        self.coming = deque((event, number - len(window)) for number, event in enumerate(window))
        for workflow in self.workflows:
            self.driver.schedule(workflow, self.start, self.start, first=True)

    def _feed(self) -> None:
        """Queue the sample events due no later than the next queued item (all up to the next, if none is)."""
        coming, queue = self.coming, self.driver.queue
        if coming and not queue:
            event, number = coming.popleft()
            queue.push_numbered(event.at, EVENT, ("event", event), number)
        while coming and coming[0][0].at.timestamp() <= queue.first_key():
            event, number = coming.popleft()
            queue.push_numbered(event.at, EVENT, ("event", event), number)

    def item_failed(self, at: datetime, item: tuple, error: Exception) -> None:
        """An item the engine could not handle (a bug met by one contact's data, a moment out of range): its
        enrollment ends failed, or the failure is shown on the contact's timeline; the run goes on, as a
        tick does (where the item is also rolled back: docs/daemon.md)."""
        reason = printable(f"{type(error).__name__}: {error}")
        kind = item[0]
        if kind == "wake":
            enrollment = self.ports.enrollments.get(item[1])
            if enrollment is None:
                return
            if not enrollment.ended:
                enrollment.state, enrollment.wake_at = FAILED, None
                enrollment.ended_at, enrollment.reason = at, f"could not go on: {reason}"
                self.ports.enrollments.save(enrollment)
            self.record([LogEntry(at, enrollment.contact, enrollment.workflow, enrollment.version,
                                  enrollment.position or "", "failed", f"could not go on: {reason}")])
        elif kind == "event":
            event = item[1]
            self.record([LogEntry(at, event.contact, "-", 0, "event", "failed", f"event {event.name}: {reason}")])
        elif kind in ("due", "inactive", "segment"):
            workflow = self.ports.workflows.named(item[1])
            what = "due" if kind == "segment" else kind
            self.record([LogEntry(at, item[2], item[1], workflow.version if workflow else 0, "trigger",
                                  "failed", f"{what} trigger: {reason}")])

    # --- what the memory ports hand over --------------------------------------------------------------

    def rendered(self, workflow: Workflow, enrollment: Enrollment, contact: ContactState,
                 message: RenderedMessage) -> None:
        """A message rendered for a send: kept for the result, as the timeline is."""
        if self.keep_timeline and (self.contact_filter is None or contact.id == self.contact_filter):
            self.messages.append(message)  # rendered for everyone (a failure counts), kept as the timeline is
        if self.on_message is not None:
            self.on_message(message)

    def record(self, entries: list[LogEntry]) -> None:
        contact_filter, funnels, keep = self.contact_filter, self.funnels, self.keep_timeline
        if self.tallies:  # every contact's, whatever the run shows
            self._tally(entries)
        for entry in entries:
            if contact_filter is not None and entry.contact != contact_filter:
                continue
            funnel = funnels.get(entry.workflow)
            if funnel is not None:
                count(funnel, entry, self.reached[entry.workflow])
            if keep:
                self.timeline.append(entry)


    def _tally(self, entries: list[LogEntry]) -> None:
        for entry in entries:
            if entry.enrollment is None:
                continue
            if entry.kind == "split" and not entry.extra.get("winner"):
                tally = self.tallies.get((entry.workflow, entry.extra.get("split", "")))
                if tally is not None:
                    tally.assign(entry.contact, entry.enrollment, entry.extra["variant"], entry.at)
            elif entry.kind == "goal":
                for tally in self.goal_tallies.get(entry.workflow, ()):
                    tally.convert(entry.contact, entry.enrollment, entry.at)


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
