"""`mauto simulate --base REF`: the same samples through two versions of the project, and only what differs.

Two simulations, no more: the base project (as at REF, `mauto.gitref`) and the head (the working tree) each run
once on the same samples (the head's files, or the options given), the same start and the same length. Then
one pass over both timelines, contact by contact, pairs what each contact met in both runs: an entry into a
workflow, a message sent, a task, a webhook call, a coupon, a conversion, an exit, a failure. A step is known
by the head's name for it (`mauto.diff.Matching`: a step whose place changed keeps its identity), and the
k-th such entry of a contact in one run pairs with the k-th in the other. What is paired but happens at
another time "moves"; what is paired with another template or other text "changes"; the rest is new or no
longer happens. The funnels give the totals per workflow ("3 more emails, 1 fewer SMS").
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.text import Text

from mauto.config import Project
from mauto.diff import DEPLOYED, Matching, code, open_side, read_side
from mauto.engine.state import LogEntry
from mauto.engine.timing import zone
from mauto.errors import MautoError, printable
from mauto.gitref import WORKING_TREE
from mauto.messages import RenderedMessage
from mauto.simulate.result import Funnel, SimulationResult
from mauto.simulate.run import Simulation, select_workflows
from mauto.simulate.samples import DEFAULT_SAMPLES, Samples, load_contacts, load_events, load_mapping
from mauto.store.sqlite import Store

# What a contact meets, as the step log says it; the other entries (waits, branches, updates ...) are how a
# workflow gets there, and show up through these.
OUTCOMES = ("enter", "send", "task", "webhook", "coupon", "goal", "exit", "failed")
# The funnel's measures, and how a total names one ("1 more email", "2 fewer SMS").
_MEASURES = (("entered", "entry", "entries"), ("email", "email", "emails"), ("sms", "SMS", "SMS"),
             ("converted", "conversion", "conversions"), ("exited", "exit", "exits"),
             ("suppressed", "suppressed message", "suppressed messages"), ("failed", "failure", "failures"))
TIME_FORMAT = "%a %d %b %H:%M %Z"


@dataclass
class Difference:
    """One thing a contact meets in one run and not the same way in the other."""

    workflow: str
    step: str  # the head's name of the step (the base's when the head has no such step)
    kind: str  # the step log's kind: send, task, enter ...
    what: str  # `email cart/reminder-2`, `task Call Emma …`, `enter`
    change: str  # added | removed | moved | changed
    before: datetime | None
    after: datetime | None
    details: list[str] = field(default_factory=list)  # template, subject or text changes

    @property
    def at(self) -> datetime:
        moment = self.after or self.before
        assert moment is not None
        return moment

    def to_dict(self, tz: Any) -> dict[str, Any]:
        return {"workflow": self.workflow, "step": self.step, "kind": self.kind, "what": self.what,
                "change": self.change,
                "before": self.before.astimezone(tz).isoformat() if self.before else None,
                "after": self.after.astimezone(tz).isoformat() if self.after else None, "details": self.details}


@dataclass
class ContactChanges:
    contact: str
    header: str  # `Ben Carter · ben.carter@mail.example · America/New_York`
    zone: str
    differences: list[Difference]


@dataclass
class Comparison:
    base: str
    head: str
    start: datetime
    end: datetime
    contacts: int  # how many contacts ran
    changes: list[ContactChanges] = field(default_factory=list)  # in the contacts file's order, only those that differ
    totals: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)  # workflow -> measure -> (base, head)

    @property
    def same(self) -> bool:
        return not self.changes and not self.totals

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base, "head": self.head, "start": self.start.isoformat(), "end": self.end.isoformat(),
            "contacts": self.contacts,
            "changes": [{"contact": item.contact, "differences": [difference.to_dict(zone(item.zone))
                                                                  for difference in item.differences]}
                        for item in self.changes],
            "totals": {workflow: {measure: {"base": before, "head": after, "difference": after - before}
                                  for measure, (before, after) in measures.items()}
                       for workflow, measures in self.totals.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


# --- running both ----------------------------------------------------------------------------------------------


@dataclass
class SampleFiles:
    """The sample files both runs read (the head's defaults, or the options given; None: no such file)."""

    contacts: Path
    events: Path | None
    coupons: Path | None
    webhooks: Path | None


def sample_files(head: Project, contacts: Path | None = None, events: Path | None = None,
                 coupons: Path | None = None, webhooks: Path | None = None) -> SampleFiles:
    """The files as `mauto simulate` picks them, from the head project: the base never reads its own."""

    def pick(given: Path | None, what: str) -> Path | None:
        if given is not None:
            if not given.exists():
                raise MautoError(f"{given}: no such file")
            return given
        default = head.root / DEFAULT_SAMPLES[what]
        return default if default.exists() else None

    found = pick(contacts, "contacts")
    if found is None:
        raise MautoError("no contacts file: pass --contacts FILE (YAML, JSON Lines or CSV) or create "
                         f"{head.display(head.root / DEFAULT_SAMPLES['contacts'])}")
    return SampleFiles(found, pick(events, "events"), pick(coupons, "coupons"), pick(webhooks, "webhooks"))


def _samples(head: Project, files: SampleFiles, start: datetime) -> Samples:
    """Read afresh for each run (a run changes its contacts and uses up its coupon codes), with the head's
    declared fields and events: the samples are the head's."""
    contacts = load_contacts(files.contacts, head)
    known = {contact.id for contact in contacts}
    events = load_events(files.events, head, start, known) if files.events else []
    return Samples(contacts, events, load_mapping(files.coupons, "coupons"), load_mapping(files.webhooks, "webhooks"))


def _at(label: str, error: MautoError) -> MautoError:
    """An error of the base's run, saying so (its paths are the base's, relative to its project folder)."""
    wrapped = MautoError(f"at {label}: {error}")
    wrapped.exit_code = error.exit_code
    return wrapped


def compare(base: Project, head: Project, start: datetime, horizon: timedelta, targets: list[Path] | None = None,
            files: SampleFiles | None = None, labels: tuple[str, str] = ("base", WORKING_TREE)) -> Comparison:
    """Run the samples through `base` and through `head` (once each) and say what differs, contact by contact,
    then per workflow. `targets` choose workflows as `mauto simulate` does, in the head; the base runs the
    workflows with the same ids. Each project is linted once, as `mauto simulate` lints it."""
    files = files or sample_files(head)
    end = start + horizon
    chosen, every = select_workflows(head, targets, start)
    head_samples, base_samples = _samples(head, files, start), _samples(head, files, start)
    try:
        base_chosen, base_every = select_workflows(base, None, start)
    except MautoError as error:
        raise _at(labels[0], error) from None
    if targets:
        ids = {workflow.id for workflow in chosen}
        base_chosen = [workflow for workflow in base_every if workflow.id in ids]
    before = Simulation(base, base_chosen, base_samples, start, end, base_every).run()
    after = Simulation(head, chosen, head_samples, start, end, every).run()
    return differences(before, after, _step_names(base, head), labels, _link_pattern(base, head))


def compare_refs(project: Project, base: str, start: datetime, horizon: timedelta,
                 targets: list[Path] | None = None, contacts: Path | None = None, events: Path | None = None,
                 coupons: Path | None = None, webhooks: Path | None = None,
                 open_store: Callable[[], Store] | None = None) -> Comparison:
    """`mauto simulate --base REF`: the project as at git `REF` (or `deployed`: what the store runs) against the
    working tree, on the working tree's samples (or the files given)."""
    files = sample_files(project, contacts, events, coupons, webhooks)
    with ExitStack() as stack:
        store = stack.enter_context(open_store()) if base == DEPLOYED and open_store is not None else None
        base_project, _notes = stack.enter_context(open_side(project, base, store))
        return compare(base_project, project, start, horizon, targets, files, (base, WORKING_TREE))


def _step_names(base: Project, head: Project) -> dict[str, dict[str, str]]:
    """Per workflow on both sides: the base's name of each step -> the head's (they differ when an unnamed step
    moved down, say)."""
    before, after = read_side(base), read_side(head)
    return {workflow_id: Matching(old, after.workflows[workflow_id]).names()
            for workflow_id, old in before.workflows.items() if workflow_id in after.workflows}


def _link_pattern(base: Project, head: Project) -> re.Pattern[str] | None:
    """mauto's own links in a message (unsubscribe, tracked links, the pixel): their tokens name the message,
    which is another in each run; compared as one placeholder."""
    urls = {project.serve.public_url for project in (base, head) if project.serve.public_url}
    if not urls:
        return None
    return re.compile("(?:" + "|".join(re.escape(url) for url in sorted(urls)) + r")[^\s\"'<>)\]]*")


# --- comparing -------------------------------------------------------------------------------------------------


def _what(entry: LogEntry) -> str:
    if entry.kind == "send":
        return f"{entry.channel} {entry.template}"
    if entry.kind in ("task", "webhook", "coupon"):
        return printable(f"{entry.kind} {entry.detail}")
    if entry.kind == "exit":
        return printable(f"exit: {entry.detail}")
    return entry.kind


def _key(entry: LogEntry, names: dict[str, str] | None) -> tuple[str, str, str]:
    """What pairs an entry with its counterpart: the workflow, the kind, and the step by the head's name (a goal
    and an exit are known by their reason instead: they are logged where the contact happened to wait). A base
    step the head does not have keeps a name no head step can have. `names` None: the entry is the head's."""
    if entry.kind == "goal":
        return entry.workflow, entry.kind, ""
    if entry.kind == "exit":
        return entry.workflow, entry.kind, entry.detail
    if names is None or entry.step == "trigger":
        return entry.workflow, entry.kind, entry.step
    return entry.workflow, entry.kind, names.get(entry.step, "\0" + entry.step)


def _grouped(result: SimulationResult, names: dict[str, dict[str, str]] | None) -> dict[str, dict[tuple, list]]:
    """contact -> key -> [(entry, its message or None)], in time order."""
    messages: dict[tuple[str, str, str, datetime], list[RenderedMessage]] = defaultdict(list)
    for message in result.messages:
        messages[(message.contact, message.workflow, message.step, message.at)].append(message)
    grouped: dict[str, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    for entry in result.timeline:
        if entry.kind not in OUTCOMES:
            continue
        sent: RenderedMessage | None = None
        if entry.kind == "send":
            waiting = messages.get((entry.contact, entry.workflow, entry.step, entry.at))
            sent = waiting.pop(0) if waiting else None
        workflow_names = names.get(entry.workflow, {}) if names is not None else None
        grouped[entry.contact][_key(entry, workflow_names)].append((entry, sent))
    return grouped


def _content(old: RenderedMessage | None, new: RenderedMessage | None, links: re.Pattern[str] | None) -> list[str]:
    """What differs in what the contact reads: the subject, the text, the HTML (mauto's links aside: their
    tokens name the message, another one in each run)."""
    if old is None or new is None:
        return []

    def plain(message: RenderedMessage, text: str | None) -> str | None:
        if text is None:
            return None
        for url in re.findall(r"<([^<>]+)>", message.headers.get("List-Unsubscribe", "")):
            text = text.replace(url, "<link>")  # its own unsubscribe link, wherever `unsubscribe_url` points
        return links.sub("<link>", text) if links is not None else text

    details = []
    if old.subject != new.subject:
        details.append(f"subject: {printable(old.subject or '')} → {printable(new.subject or '')}")
    if old.channel == "sms":
        if plain(old, old.text) != plain(new, new.text):
            details.append(f"text: {printable(old.text.strip())} → {printable(new.text.strip())}")
        return details
    if plain(old, old.text) != plain(new, new.text):
        details.append("the text part changes")
    if plain(old, old.html) != plain(new, new.html):
        details.append("the HTML part changes")
    return details


def _pair(old: tuple[LogEntry, RenderedMessage | None], new: tuple[LogEntry, RenderedMessage | None],
          name: str, links: re.Pattern[str] | None) -> Difference | None:
    (before, old_message), (after, new_message) = old, new
    details = []
    if before.kind == "send" and before.template != after.template:
        details.append(f"template: {before.template} → {after.template}")
    if before.kind in ("task", "webhook", "coupon") and before.detail != after.detail:
        details.append(printable(f"{before.detail} → {after.detail}"))
    details += _content(old_message, new_message, links)
    change = "moved" if before.at != after.at else "changed" if details else None
    if change is None:
        return None
    return Difference(after.workflow, name, after.kind, _what(after), change, before.at, after.at, details)


def _contact_differences(old: dict[tuple, list], new: dict[tuple, list], links: re.Pattern[str] | None
                         ) -> list[Difference]:
    found: list[Difference] = []
    for key in [*old, *(key for key in new if key not in old)]:
        before, after = old.get(key, []), new.get(key, [])
        for index in range(max(len(before), len(after))):
            if index < len(before) and index < len(after):
                difference = _pair(before[index], after[index], after[index][0].step, links)
                if difference is not None:
                    found.append(difference)
            elif index < len(before):
                entry = before[index][0]
                mapped = key[2] if key[1] not in ("goal", "exit") else ""
                step = mapped if mapped and not mapped.startswith("\0") else entry.step
                found.append(Difference(entry.workflow, step, entry.kind, _what(entry), "removed", entry.at, None))
            else:
                entry = after[index][0]
                found.append(Difference(entry.workflow, entry.step, entry.kind, _what(entry), "added", None,
                                        entry.at))
    found.sort(key=lambda item: (item.at.timestamp(), item.workflow))
    return found


def _header(result: SimulationResult, contact_id: str) -> str:
    contact = result.contacts[contact_id]
    full_name = " ".join(str(contact.fields[key]) for key in ("first_name", "last_name") if contact.fields.get(key))
    parts = (full_name, contact.fields.get("email") or contact.fields.get("phone"), result.zones.get(contact_id))
    return printable(" · ".join(str(part) for part in parts if part))


def _totals(before: dict[str, Funnel], after: dict[str, Funnel]) -> dict[str, dict[str, tuple[int, int]]]:
    totals: dict[str, dict[str, tuple[int, int]]] = {}
    for workflow in sorted(set(before) | set(after)):
        old, new = before.get(workflow, Funnel()), after.get(workflow, Funnel())
        measures = {}
        for measure, _one, _many in _MEASURES:
            pair = (_measure(old, measure), _measure(new, measure))
            if pair[0] != pair[1]:
                measures[measure] = pair
        if measures:
            totals[workflow] = measures
    return totals


def _measure(funnel: Funnel, measure: str) -> int:
    if measure in ("email", "sms"):
        return int(funnel.sent.get(measure, 0))
    return int(getattr(funnel, measure))


def differences(before: SimulationResult, after: SimulationResult, names: dict[str, dict[str, str]],
                labels: tuple[str, str], links: re.Pattern[str] | None = None) -> Comparison:
    """The two runs' timelines compared in one pass, contact by contact; then the funnels' totals."""
    old, new = _grouped(before, names), _grouped(after, None)
    result = Comparison(labels[0], labels[1], after.start, after.end, len(after.contacts))
    for contact_id in after.contacts:
        found = _contact_differences(old.get(contact_id, {}), new.get(contact_id, {}), links)
        if found:
            result.changes.append(ContactChanges(contact_id, _header(after, contact_id),
                                                 after.zones.get(contact_id, "UTC"), found))
    result.totals = _totals(before.funnels, after.funnels)
    return result


# --- showing it ------------------------------------------------------------------------------------------------


def _local(moment: datetime | None, tz: Any) -> str:
    return moment.astimezone(tz).strftime(TIME_FORMAT) if moment is not None else ""


def sentence(difference: Difference, tz: Any) -> str:
    """`moves from Wed 25 Nov 08:00 EST to Fri 27 Nov 08:00 EST`, `no longer (was …)`, `new (…)`."""
    if difference.change == "moved":
        return f"moves from {_local(difference.before, tz)} to {_local(difference.after, tz)}"
    if difference.change == "removed":
        return f"no longer (was {_local(difference.before, tz)})"
    if difference.change == "added":
        return f"new ({_local(difference.after, tz)})"
    return f"changes ({_local(difference.after, tz)})"


def total_line(workflow: str, measures: dict[str, tuple[int, int]]) -> str:
    """`abandoned-cart: 3 more emails, 1 fewer SMS`."""
    parts = []
    for measure, one, many in _MEASURES:
        if measure in measures:
            before, after = measures[measure]
            change = after - before
            parts.append(f"{abs(change)} {'more' if change > 0 else 'fewer'} {one if abs(change) == 1 else many}")
    return f"{workflow}: " + ", ".join(parts)


def summary(comparison: Comparison) -> str:
    """`HEAD → working tree, Tue 24 Nov 2026 09:00 CET + 14d: 3 of 12 contacts differ`."""
    days = comparison.end - comparison.start
    length = f"{days.days}d" if days == timedelta(days=days.days) else str(days)
    who = f"{len(comparison.changes)} of {comparison.contacts} contact{'s' if comparison.contacts != 1 else ''} " \
          f"{'differs' if len(comparison.changes) == 1 and comparison.contacts != 1 else 'differ'}"
    if comparison.same:
        who = f"no difference for the {comparison.contacts} contact{'s' if comparison.contacts != 1 else ''}"
    return (f"simulate {comparison.base} → {comparison.head}, from {comparison.start.isoformat()} for {length}: "
            f"{who}")


_STYLES = {"added": "green", "removed": "red", "moved": "cyan", "changed": "yellow"}


def text_blocks(comparison: Comparison) -> list[Text]:
    """For a terminal: the summary, one block per contact that differs (times in the contact's zone), then
    the totals per workflow."""
    blocks = [Text(summary(comparison), style="bold")]
    for item in comparison.changes:
        tz = zone(item.zone)
        lines = [Text(item.contact, style="bold").append(f"  {item.header}", style="")]
        widths = [max(len(getattr(difference, column)) for difference in item.differences)
                  for column in ("workflow", "step", "what")]
        for difference in item.differences:
            line = Text("  " + "  ".join(getattr(difference, column).ljust(width) for column, width
                                         in zip(("workflow", "step", "what"), widths, strict=True)) + "  ")
            line.append(sentence(difference, tz), style=_STYLES[difference.change])
            lines.append(line)
            lines += [Text(f"      {detail}", style="dim") for detail in difference.details]
        blocks.append(Text("\n").join(lines))
    if comparison.totals:
        blocks.append(Text("\n").join(Text(total_line(workflow, measures))
                                      for workflow, measures in comparison.totals.items()))
    return blocks


def _escape(text: str) -> str:
    """Text from the samples, safe in Markdown: no markup, no HTML, one line."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~&])", r"\\\1", " ".join(printable(text).split()))


def markdown(comparison: Comparison, heading: str = "##") -> str:
    """For a pull-request comment: the summary, the totals per workflow, then each contact's differences."""
    lines = [f"{heading} mauto simulate: {code(comparison.base)} → {code(comparison.head)}", "",
             summary(comparison) + ".", ""]
    if comparison.totals:
        lines += [f"- {code(workflow)}: " + total_line(workflow, measures).split(": ", 1)[1]
                  for workflow, measures in comparison.totals.items()] + [""]
    for item in comparison.changes:
        tz = zone(item.zone)
        lines += [f"**{code(item.contact)}** {_escape(item.header)}", ""]
        for difference in item.differences:
            lines.append(f"- {code(difference.workflow)} › {code(difference.step)} {code(difference.what)}: "
                         f"{sentence(difference, tz)}")
            lines += [f"  - {_escape(detail)}" for detail in difference.details]
        lines.append("")
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"

