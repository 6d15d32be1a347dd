"""`mauto test`: scenario files run through the engine, each expectation checked against the timeline.

A scenario (`scenarios/*.yaml`) gives contacts, events, a start time and a list
of expectations about single contacts: "c01 gets cart/reminder-1 at +1h", "c02
gets no sms", "c03 converts in onboarding". It runs on the simulation's virtual
clock, with the same engine as the daemon, so a month takes an instant. An
expectation that fails comes with the contact's timeline as a diff, times in
the contact's own zone: `-` what was expected, `+` what happened instead, and
the other lines of the workflows concerned for context.

This module returns results and never prints; `mauto test` prints them with
`text_lines`, `github_lines` or `as_json`.
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from jsonschema.exceptions import ValidationError, relevance

from mauto.config import Project
from mauto.datafiles import DataError, coerce, parse_time
from mauto.engine.interpreter import Program, path_key
from mauto.engine.records import BUILTIN_DEFAULTS, ContactState, Event
from mauto.engine.state import LogEntry
from mauto.engine.timing import contact_zone, zone
from mauto.errors import UsageError, YamlError
from mauto.messages import MessageRenderer
from mauto.report import _local_times, _what
from mauto.simulate import EVENT_KEYS, Samples, Simulation, load_contacts, load_events, load_mapping
from mauto.workflow.durations import DurationError, format_duration, parse_duration
from mauto.workflow.loader import Document, JsonPath, Pos, load
from mauto.workflow.model import Workflow
from mauto.workflow.schema import (
    _a,
    _pattern,
    _suggest,
    _type_words,
    _value_words,
    first_duplicate,
    validator,
    value_at,
)
from mauto.workflow.schema import schema as packaged_schema

SCENARIO_SUFFIXES = (".yaml", ".yml")
SCENARIOS_DIR = "scenarios"
DEFAULT_HORIZON = "30d"
CHANNELS = ("email", "sms")

# Each expectation has `contact` and exactly one of these keys (the schema says which modifiers go with which).
KINDS = ("gets", "gets_no", "messages", "enters", "does_not_enter", "exits", "completes", "converts",
         "does_not_convert", "variant", "reaches", "does_not_reach", "fields", "fails")

# What people from other test tools write for a key; difflib cannot guess these.
SYNONYMS = {
    "expects": "expect", "expectations": "expect", "assert": "expect", "asserts": "expect", "then": "expect",
    "duration": "for", "horizon": "for", "until": "for", "begin": "start", "starts": "start", "now": "start",
    "receives": "gets", "get": "gets", "sent": "gets", "email": "gets", "sms": "gets",
    "not_gets": "gets_no", "gets_not": "gets_no", "no_message": "gets_no", "never_gets": "gets_no",
    "enter": "enters", "entered": "enters", "not_enters": "does_not_enter", "never_enters": "does_not_enter",
    "exit": "exits", "leaves": "exits", "exited": "exits", "convert": "converts", "goal": "converts",
    "converted": "converts", "complete": "completes", "finishes": "completes", "split": "variant",
    "reach": "reaches", "reached": "reaches", "has": "fields", "field": "fields", "fail": "fails",
    "sends": "messages", "count": "messages", "time": "at", "when": "at", "within": "tolerance",
}


# --- results ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """Why a scenario file cannot run: a place in it (or in a data file it names) and a sentence."""

    path: str
    line: int
    col: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "column": self.col, "message": self.message}


@dataclass
class Expectation:
    """One item of `expect:`, parsed: its kind, the contact, the value, the modifiers, its place in the file."""

    kind: str
    contact: str
    value: Any
    pos: Pos
    options: dict[str, Any] = field(default_factory=dict)  # the modifiers as written: at, channel, workflow...
    at: datetime | None = None
    tolerance: timedelta = timedelta(0)
    text: str = ""  # the expectation in words: "c01 gets cart/reminder-1 at +1h (Tue 24 Nov 10:00 CET)"


@dataclass
class ExpectationResult:
    expectation: Expectation
    passed: bool
    message: str = ""  # what happened instead, in words
    diff: list[str] = field(default_factory=list)  # "- expected", "+ actual", "  context" lines

    def as_dict(self) -> dict[str, Any]:
        expectation = self.expectation
        return {"line": expectation.pos.line, "column": expectation.pos.col, "kind": expectation.kind,
                "contact": expectation.contact, "expectation": expectation.text, "passed": self.passed,
                "message": self.message, "diff": self.diff}


@dataclass
class ScenarioResult:
    path: str
    name: str
    results: list[ExpectationResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # the file could not run

    @property
    def passed(self) -> int:
        return sum(1 for result in self.results if result.passed)

    @property
    def failed(self) -> int:
        return sum(1 for result in self.results if not result.passed)

    @property
    def status(self) -> str:
        return "error" if self.problems else "failed" if self.failed else "passed"

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "status": self.status,
                "expectations": [result.as_dict() for result in self.results],
                "problems": [problem.as_dict() for problem in self.problems]}


@dataclass
class ScenarioRun:
    scenarios: list[ScenarioResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(scenario.passed for scenario in self.scenarios)

    @property
    def failed(self) -> int:
        return sum(scenario.failed for scenario in self.scenarios)

    @property
    def errors(self) -> int:
        return sum(1 for scenario in self.scenarios if scenario.problems)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.errors


# --- finding the files ------------------------------------------------------------------------------------

def scenario_files(project: Project, paths: list[Path] | None = None) -> list[Path]:
    """The scenario files to run: those given (files, or folders searched for *.yaml), else scenarios/."""
    if not paths:
        folder = project.root / SCENARIOS_DIR
        found = _yaml_files(folder) if folder.is_dir() else []
        if not found:
            raise UsageError(f"no scenario files in {project.display(folder)}/; write one (see docs/testing.md) "
                             "or pass PATH")
        return found
    files: list[Path] = []
    workflows = project.workflows_dir.resolve()
    for path in paths:
        if path.exists() and (path.resolve() == workflows or workflows in path.resolve().parents):
            raise UsageError(f"{path}: a workflow, not a scenario; mauto test runs scenario files "
                             f"({project.display(project.root / SCENARIOS_DIR)}/*.yaml) that name the workflows "
                             "they test")
        if path.is_dir():
            inside = _yaml_files(path)
            if not inside:
                raise UsageError(f"{path}: no scenario files (*.yaml) in this folder")
            files.extend(inside)
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    unique: dict[Path, Path] = {}
    for path in files:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.suffix in SCENARIO_SUFFIXES and path.is_file())


# --- the use case -------------------------------------------------------------------------------------

def run_scenarios(project: Project, paths: list[Path] | None = None) -> ScenarioRun:
    """Run the scenario files (default: all of scenarios/) and check every expectation.

    A file that is not a valid scenario is reported with its problems and the
    others still run. The project must lint without errors, checked as of the
    earliest scenario start (not the wall clock), so a run is the same every day.
    """
    files = scenario_files(project, paths)
    drafts: list[_Draft] = []
    run = ScenarioRun()
    for path in files:
        draft = _read(path, project)
        run.scenarios.append(draft.result)
        if not draft.result.problems:
            drafts.append(draft)
    if not drafts:
        return run
    workflows = project_workflows(project, min(draft.start for draft in drafts))
    catalog = _Catalog(project, workflows)
    renderer = MessageRenderer(project)  # shared by the scenarios: it caches the parsed templates
    for draft in drafts:
        scenario = _Loader(project, catalog, draft).load()
        if scenario is None:
            continue
        draft.result.results = _check_all(scenario, catalog, renderer)
    return run


def project_workflows(project: Project, now: datetime) -> list[Workflow]:
    """Every workflow of the project, built; refuses a project with lint errors, linted as of `now`."""
    from mauto.lint.runner import refuse_errors, workflow_files
    from mauto.workflow.model import build

    refuse_errors(project, now)
    return [build(load(path, project.display(path))) for path in workflow_files(project.workflows_dir)]


# --- reading a scenario -------------------------------------------------------------------------------

@dataclass
class _Draft:
    """A scenario file that parsed and passed the schema, not yet checked against the project."""

    path: Path
    document: Document
    result: ScenarioResult
    start: datetime = datetime.min.replace(tzinfo=UTC)


def _read(path: Path, project: Project) -> _Draft:
    shown = project.display(path)
    result = ScenarioResult(shown, path.stem)
    try:
        document = load(path, shown)
    except YamlError as error:
        result.problems.append(Problem(error.path or shown, error.line or 1, error.col or 1, error.message))
        return _Draft(path, Document(shown, "", None), result)
    draft = _Draft(path, document, result)
    result.problems.extend(schema_problems(document))
    if result.problems:
        return draft
    data = document.data
    result.name = data.get("name") or path.stem
    try:
        draft.start = parse_time(data["start"], None, project.timezone)
    except ValueError as error:
        result.problems.append(_at(document, ("start",), f"`start`: {error}"))
    return draft


def _at(document: Document, path: JsonPath, message: str, key: bool = False) -> Problem:
    pos = document.key_pos(path) if key else document.pos(path)
    return Problem(document.path, pos.line, pos.col, message)


@dataclass
class Scenario:
    """A scenario ready to run: everything parsed and checked against the project."""

    path: str
    document: Document
    start: datetime
    end: datetime
    workflows: list[Workflow]
    samples: Samples
    expectations: list[Expectation]
    zones: dict[str, str]  # contact -> the zone its times are shown in


class _Catalog:
    """What expectations may name: workflows, their steps and splits, templates."""

    def __init__(self, project: Project, workflows: list[Workflow]) -> None:
        self.project = project
        self.workflows = {workflow.id: workflow for workflow in workflows}
        self.steps: dict[str, list[str]] = {}  # workflow -> step labels as the timeline shows them
        self.splits: dict[str, dict[str, list[str]]] = {}  # workflow -> split id -> variant names
        self.senders: dict[tuple[str, str], set[str]] = defaultdict(set)  # (channel, template) -> workflows
        for workflow in workflows:
            program = Program(workflow)
            self.steps[workflow.id] = [program.label(key) for key in program.steps]
            self.splits[workflow.id] = {}
            for step in workflow.iter_steps():
                if step.kind == "split":
                    split_id = step.value.get("id") or step.id or path_key(step)
                    self.splits[workflow.id][split_id] = list(step.value["variants"])
                elif step.kind in CHANNELS:
                    self.senders[(step.kind, step.value)].add(workflow.id)
        folder = project.templates_dir
        self.templates: dict[str, set[str]] = defaultdict(set)  # template name -> channels it exists for
        for channel, suffix in (("email", ".email.html"), ("sms", ".sms.txt")):
            if folder.is_dir():
                for file in folder.rglob("*" + suffix):
                    name = file.relative_to(folder).as_posix()[:-len(suffix)]
                    self.templates[name].add(channel)

    def channels_of(self, template: str) -> list[str]:
        return sorted(self.templates.get(template, ()))

    def workflows_sending(self, template: str | None, channel: str | None) -> list[str]:
        found: set[str] = set()
        for (sent_channel, sent_template), workflows in self.senders.items():
            if (template is None or sent_template == template) and (channel is None or sent_channel == channel):
                found |= workflows
        return sorted(found)


class _Loader:
    """Turns a schema-valid scenario document into a Scenario, collecting every problem with its place."""

    def __init__(self, project: Project, catalog: _Catalog, draft: _Draft) -> None:
        self.project = project
        self.catalog = catalog
        self.draft = draft
        self.document = draft.document
        self.data: dict = draft.document.data
        self.problems = draft.result.problems

    def problem(self, path: JsonPath, message: str, key: bool = False) -> None:
        self.problems.append(_at(self.document, path, message, key))

    def load(self) -> Scenario | None:
        data = self.data
        start = self.draft.start
        horizon = parse_duration(data.get("for", DEFAULT_HORIZON))  # the schema has checked its form
        end = start + horizon
        chosen = []
        for index, workflow_id in enumerate(data.get("workflows") or []):
            if self.known_workflow(workflow_id, ("workflows", index)):
                chosen.append(self.catalog.workflows[workflow_id])
        workflows = chosen if data.get("workflows") else list(self.catalog.workflows.values())
        contacts = self.contacts()
        # Contacts that could not be read would make every event and expectation an "unknown contact".
        known = {contact.id for contact in contacts} if contacts is not None else None
        contacts = contacts or []
        events = self.events(start, known) if "events" in data and known is not None else []
        coupons = self.mapping("coupons")
        webhooks = self.mapping("webhooks")
        zones: dict[str, str] = defaultdict(lambda: self.project.timezone)
        zones.update({contact.id: _contact_zone(contact, self.project) for contact in contacts})
        expectations = [expectation for index, item in enumerate(data["expect"])
                        if (expectation := self.expectation(index, item, known, start, end, zones)) is not None]
        if self.problems:
            return None
        return Scenario(self.document.path, self.document, start, end, workflows,
                        Samples(contacts, events, coupons, webhooks), expectations, zones)

    # --- data ---------------------------------------------------------------------------------------

    def data_file(self, key: str) -> Path | None:
        """The data file a key names, relative to the project, as the user should see it; None if missing."""
        path = self.project.root / self.data[key]
        if not path.is_file():
            self.problem((key,), f"`{key}`: no such file {self.data[key]} (paths are relative to "
                                 f"{self.project.display(self.project.path)})")
            return None
        return Path(self.project.display(path))

    def contacts(self) -> list[ContactState] | None:
        """The scenario's contacts; None when their file cannot be read."""
        value = self.data["contacts"]
        if isinstance(value, str):
            path = self.data_file("contacts")
            if path is None:
                return None
            try:
                return load_contacts(path, self.project)
            except DataError as error:
                self.problems.append(Problem(error.path or str(path), error.line or 1, error.col or 1, error.message))
                return None
        fields = self.project.contact_fields
        contacts: dict[str, ContactState] = {}
        for index, row in enumerate(value):
            contact_id = str(row["id"])
            if not contact_id:
                self.problem(("contacts", index, "id"), "`id` must not be empty")
                continue
            if contact_id in contacts:
                self.problem(("contacts", index, "id"), f"duplicate contact id `{contact_id}`")
                continue
            values: dict[str, Any] = {}
            for name, item in row.items():
                if name == "id":
                    continue
                if name not in fields:
                    hint = _suggest(name, list(fields)) or "; declare it under `contact_fields` in mauto.yaml"
                    self.problem(("contacts", index, name), f"unknown contact field `{name}`{hint}", key=True)
                    continue
                try:
                    values[name] = coerce(item, fields[name], self.project.timezone)
                except ValueError as error:
                    self.problem(("contacts", index, name), f"contact `{contact_id}`, field `{name}`: {error}")
            contacts[contact_id] = ContactState(contact_id, values)
        return list(contacts.values())

    def events(self, start: datetime, known: set[str]) -> list[Event]:
        value = self.data["events"]
        if isinstance(value, str):
            path = self.data_file("events")
            if path is None:
                return []
            try:
                return load_events(path, self.project, start, known)
            except DataError as error:
                self.problems.append(Problem(error.path or str(path), error.line or 1, error.col or 1, error.message))
                return []
        events = []
        for index, row in enumerate(value):
            contact = str(row["contact"])
            if contact not in known:
                self.problem(("events", index, "contact"), f"event for unknown contact `{contact}`"
                             f"{_suggest(contact, sorted(known))}")
                continue
            try:
                at = parse_time(row["at"], start, self.project.timezone)
            except ValueError as error:
                self.problem(("events", index, "at"), f"`at`: {error}")
                continue
            properties = {key: item for key, item in row.items() if key not in EVENT_KEYS}
            events.append(Event(contact, str(row["event"]), at, properties,
                                str(row["id"]) if row.get("id") is not None else None))
        events.sort(key=lambda event: event.at)
        return events

    def mapping(self, key: str) -> dict:
        value = self.data.get(key)
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
        path = self.data_file(key)
        if path is None:
            return {}
        try:
            return load_mapping(path, key)
        except DataError as error:
            self.problems.append(Problem(error.path or str(path), error.line or 1, error.col or 1, error.message))
            return {}

    # --- expectations -------------------------------------------------------------------------------

    def known_workflow(self, workflow_id: str, path: JsonPath) -> bool:
        if workflow_id in self.catalog.workflows:
            return True
        self.problem(path, f"no workflow `{workflow_id}` in this project"
                           f"{_suggest(workflow_id, sorted(self.catalog.workflows))}")
        return False

    def known_template(self, template: str, channel: str | None, path: JsonPath) -> bool:
        channels = self.catalog.channels_of(template)
        if channel in channels or (channel is None and channels):
            return True
        if channels:
            suffix = ".email.html" if channel == "email" else ".sms.txt"
            self.problem(path, f"no {channel} template `{template}` (templates/{template}{suffix}); "
                               f"`{template}` is {_a(channels[0])} template")
            return False
        files = (f"templates/{template}.email.html" if channel == "email" else
                 f"templates/{template}.sms.txt" if channel == "sms" else
                 f"templates/{template}.email.html or .sms.txt")
        self.problem(path, f"no template `{template}` ({files}){_suggest(template, sorted(self.catalog.templates))}")
        return False

    def expectation(self, index: int, item: dict, known: set[str] | None, start: datetime, end: datetime,  # noqa: C901 - split by the refactor of issue 11
                    zones: dict[str, str]) -> Expectation | None:
        base = ("expect", index)
        kind = next(key for key in KINDS if key in item)  # the schema guarantees exactly one
        contact = str(item["contact"])
        count = len(self.problems)
        if known is not None and contact not in known:
            self.problem(base + ("contact",), f"no contact `{contact}` in this scenario"
                                              f"{_suggest(contact, sorted(known))}")
        value = item[kind]
        options = {key: item[key] for key in item if key not in ("contact", kind)}
        expectation = Expectation(kind, contact, value, self.document.pos(base), options)
        workflow = options.get("workflow")
        if workflow is not None:
            self.known_workflow(workflow, base + ("workflow",))
        if kind in ("gets", "gets_no"):
            channel = options.get("channel")
            if value in CHANNELS:
                if channel is not None and channel != value:
                    self.problem(base + ("channel",), f"`channel: {channel}` contradicts `{kind}: {value}`")
            else:
                self.known_template(value, channel, base + (kind,))
        elif kind == "messages" and "template" in options:
            self.known_template(options["template"], options.get("channel"), base + ("template",))
        elif kind in ("enters", "does_not_enter", "exits", "completes", "converts", "does_not_convert", "fails"):
            if self.known_workflow(value, base + (kind,)) and kind in ("converts", "does_not_convert") \
                    and not self.catalog.workflows[value].goal:
                self.problem(base + (kind,), f"workflow `{value}` has no `goal`: nothing to convert")
        elif kind == "variant":
            self.check_variant(expectation, base)
        if kind in ("reaches", "does_not_reach") or "step" in options:
            step = value if kind in ("reaches", "does_not_reach") else options["step"]
            self.check_step(step, workflow, base + ((kind,) if kind in ("reaches", "does_not_reach") else ("step",)))
        if kind == "fields":
            fields = self.project.contact_fields
            expected = {}
            for name, item_value in value.items():
                if name not in fields:
                    hint = _suggest(name, list(fields)) or "; declare it under `contact_fields` in mauto.yaml"
                    self.problem(base + ("fields", name), f"unknown contact field `{name}`{hint}", key=True)
                    continue
                try:
                    expected[name] = coerce(item_value, fields[name], self.project.timezone)
                except ValueError as error:
                    self.problem(base + ("fields", name), f"field `{name}`: {error}")
            expectation.value = expected
        if "at" in options:
            try:
                expectation.at = parse_time(options["at"], start, self.project.timezone)
            except ValueError as error:
                self.problem(base + ("at",), f"`at`: {error}")
            else:
                tz = zone(zones[contact])
                if expectation.at < start:
                    self.problem(base + ("at",), f"`at` is before the run starts ({_stamp(start, tz)}); "
                                                 "nothing can happen then")
                elif expectation.at >= end:
                    self.problem(base + ("at",), f"`at` is after the run ends ({_stamp(end, tz)}: `start` + "
                                                 f"{self.data.get('for', DEFAULT_HORIZON)}); make `for` longer")
        if "tolerance" in options:
            try:
                expectation.tolerance = parse_duration(options["tolerance"])
            except DurationError as error:  # the schema's pattern lets very few bad ones through
                self.problem(base + ("tolerance",), f"`tolerance`: {error}")
        if len(self.problems) > count:
            return None
        expectation.text = describe(expectation, self.catalog, zone(zones[contact]))
        return expectation

    def check_step(self, step: str, workflow: str | None, path: JsonPath) -> None:
        if workflow is not None and workflow not in self.catalog.steps:
            return  # already reported
        candidates = [workflow] if workflow is not None else list(self.catalog.steps)
        labels = [label for name in candidates for label in self.catalog.steps[name]]
        if step not in labels:
            where = f"workflow `{workflow}`" if workflow else "any workflow"
            self.problem(path, f"no step `{step}` in {where}{_suggest(step, sorted(set(labels)))}")

    def check_variant(self, expectation: Expectation, base: JsonPath) -> None:
        spec = expectation.value
        split, variant = spec["split"], spec["is"]
        workflow = spec.get("workflow")
        if workflow is not None and not self.known_workflow(workflow, base + ("variant", "workflow")):
            return
        owners = [name for name, splits in self.catalog.splits.items()
                  if split in splits and (workflow is None or name == workflow)]
        if not owners:
            every = sorted({split_id for name, splits in self.catalog.splits.items() for split_id in splits
                            if workflow is None or name == workflow})
            where = f" in workflow `{workflow}`" if workflow else ""
            self.problem(base + ("variant", "split"), f"no split `{split}`{where}{_suggest(split, every)}")
            return
        if len(owners) > 1:
            self.problem(base + ("variant", "split"), f"split `{split}` is in {', '.join(owners)}; "
                                                      "add `workflow` to say which")
            return
        spec["workflow"] = owners[0]
        variants = self.catalog.splits[owners[0]][split]
        if variant not in variants:
            self.problem(base + ("variant", "is"), f"split `{split}` has no variant `{variant}`; its variants: "
                                                   f"{', '.join(variants)}")


def _contact_zone(contact: ContactState, project: Project) -> str:
    """The contact's own zone, else the project's: the zone a contact's times are shown in."""
    return contact_zone(contact.fields, project.timezone)


# --- schema problems, in words --------------------------------------------------------------------------

def schema_problems(document: Document) -> list[Problem]:
    """The scenario schema's errors for `document`, one sentence each at the line and column of the mistake."""
    found: dict[tuple[int, int, str], Problem] = {}
    for error in sorted(validator("scenario").iter_errors(document.data), key=relevance):
        for pos, message in _explain(error, document):
            found.setdefault((pos.line, pos.col, message), Problem(document.path, pos.line, pos.col, message))
    return sorted(found.values(), key=lambda p: (p.line, p.col, p.message))


def _subject(path: JsonPath) -> str:
    """A value's name for a message: "the scenario", "expectation 3", "`at` in expectation 3", "`start`",
    "item 2 of `workflows`"."""
    if not path:
        return "the scenario"
    if len(path) >= 2 and path[0] in ("expect", "contacts", "events") and isinstance(path[1], int):
        noun = {"expect": "expectation", "contacts": "contact", "events": "event"}[path[0]]
        owner = f"{noun} {path[1] + 1}"
        rest = path[2:]
        if not rest:
            return owner
        return f"`{_dotted(rest)}` in {owner}"
    if isinstance(path[-1], int):
        return f"item {path[-1] + 1} of `{_dotted(path[:-1])}`"
    return f"`{_dotted(path)}`"


def _dotted(path: JsonPath) -> str:
    return ".".join(str(part + 1) if isinstance(part, int) else part for part in path)


def _suggest_key(word: str, choices: list[str]) -> str:
    synonym = SYNONYMS.get(word.lower())
    if synonym in choices:
        return f"; did you mean `{synonym}`?"
    return _suggest(word, choices)


def _explain(error: ValidationError, document: Document) -> Iterator[tuple[Pos, str]]:
    path = tuple(error.absolute_path)
    where = what = _subject(path)
    kind = error.validator
    schema_ = error.schema if isinstance(error.schema, dict) else {}
    instance: Any = error.instance  # jsonschema sets it on every error it yields (`Unset` only on hand-made ones)
    validator_value: Any = error.validator_value
    in_expectation = len(path) == 2 and path[0] == "expect"

    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema_.get("properties", {}))
        for key in instance:
            if key not in allowed:
                inside = f" in {where}" if path else ""
                yield document.key_pos(path + (key,)), f"unknown key `{key}`{inside}{_suggest_key(key, allowed)}"
        return
    if kind == "not" and in_expectation and isinstance(instance, dict):
        yield document.pos(path), f"{where} has nothing to check; add one of: {', '.join(KINDS)}"
        return
    if kind == "enum" and "propertyNames" in error.relative_schema_path and isinstance(instance, str):
        parent = value_at(document.data, path)
        if not isinstance(parent, dict) or instance not in _expectation_keys():
            return  # an unknown key: additionalProperties says it
        present = [key for key in KINDS if key in parent]
        if len(present) > 1:
            named = ", ".join(f"`{key}`" for key in present[:-1]) + f" and `{present[-1]}`"
            count = {2: "two", 3: "three"}.get(len(present), str(len(present)))
            yield (document.key_pos(path + (present[1],)),
                   f"{where} checks {count} things, {named}; an expectation checks one: make them separate items")
            return
        yield (document.key_pos(path + (instance,)),
               f"`{instance}` does not go with `{present[0]}` in {where}; "
               f"{_a(present[0]).split()[0]} `{present[0]}` expectation takes: {', '.join(validator_value)}")
        return
    if kind == "required":
        for key in validator_value:
            if not (isinstance(instance, dict) and key in instance):
                yield document.key_pos(path), f"{where} is missing `{key}`"
        return
    if kind == "type":
        yield document.pos(path), f"{what} must be {_type_words(validator_value)}, not {_value_words(instance)}"
        return
    if kind == "enum":
        choices = [str(choice) for choice in validator_value]
        suggestion = _suggest(str(instance), choices) if isinstance(instance, str) else ""
        yield (document.pos(path),
               f"{what} must be one of {', '.join(choices)}, not {_value_words(instance)}{suggestion}")
        return
    if kind == "pattern":
        # schema.py's wording (durations, template names, ids); it builds its result with `at_value`
        yield _pattern(error, path, what, lambda message, rule="schema": (document.pos(path), message))
        return
    if kind == "minLength":
        yield document.pos(path), f"{what} must not be empty"
        return
    if kind in ("minItems", "minProperties"):
        count = validator_value
        nouns = ("item", "items") if kind == "minItems" else ("entry", "entries")
        yield document.pos(path), f"{what} needs at least {count} {nouns[0] if count == 1 else nouns[1]}"
        return
    if kind == "uniqueItems":
        yield document.pos(path), f"{what} lists `{first_duplicate(instance)}` more than once"
        return
    if kind in ("minimum", "maximum"):
        bound = "at least" if kind == "minimum" else "at most"
        yield document.pos(path), f"{what} must be {bound} {validator_value}, not {instance}"
        return
    if kind == "additionalProperties":  # on a value that is not a mapping: the type error says it
        return
    yield document.pos(path), f"{what}: {error.message}"


def _expectation_keys() -> set[str]:
    return set(packaged_schema("scenario")["$defs"]["expectation"]["properties"])


# --- checking ---------------------------------------------------------------------------------------------

def _check_all(scenario: Scenario, catalog: _Catalog, renderer: MessageRenderer) -> list[ExpectationResult]:
    simulation = Simulation(catalog.project, scenario.workflows, scenario.samples, scenario.start, scenario.end,
                            catalog.workflows.values(), renderer=renderer)
    outcome = simulation.run()
    timelines: dict[str, list[LogEntry]] = defaultdict(list)
    for entry in outcome.timeline:
        timelines[entry.contact].append(entry)
    results = []
    for expectation in scenario.expectations:
        check = _Check(expectation, timelines[expectation.contact], outcome.contacts[expectation.contact],
                       zone(scenario.zones[expectation.contact]), catalog, scenario.start)
        results.append(check.run())
    results.extend(_unexpected_failures(scenario, timelines))
    return results


def _unexpected_failures(scenario: Scenario, timelines: dict[str, list[LogEntry]]) -> list[ExpectationResult]:
    """A step that failed for a contact fails the scenario, unless a `fails` expectation said it would."""
    expected = {(e.contact, e.value) for e in scenario.expectations if e.kind == "fails"}
    pos = scenario.document.key_pos(("expect",))
    results = []
    for contact, entries in timelines.items():
        for entry in entries:
            if entry.kind != "failed" or (contact, entry.workflow) in expected:
                continue
            tz = zone(scenario.zones[contact])
            expectation = Expectation("unexpected_failure", contact, entry.workflow, pos,
                                      text=f"no step fails for {contact} in {entry.workflow}")
            context = [other for other in entries if other.workflow == entry.workflow]
            where = "the trigger" if entry.step in ("", "trigger") else f"step {entry.step}"
            hint = (f"if that is expected, add `{{contact: {contact}, fails: {entry.workflow}}}`"
                    if "coupon pool" not in entry.detail or "coupons" in scenario.document.data else
                    "the scenario has no `coupons`: add `coupons: samples/coupons.yaml` or pools of its own")
            message = f"{where} failed at {_stamp(entry.at, tz)}: {_local_times(entry.detail, tz)} ({hint})"
            results.append(ExpectationResult(expectation, False, message,
                                             _diff(context, [entry], None, tz, contact, [entry.workflow])))
            expected.add((contact, entry.workflow))  # one report per contact and workflow
    return results


@dataclass
class _Expected:
    """The line a positive expectation wants in the timeline, for the diff."""

    at: datetime | None
    workflow: str
    step: str
    what: str
    detail: str = ""


_NOT_RUN = ("goal",)  # entries at a step that did not run there (the engine logs a goal at the waiting position)


class _Check:
    """One expectation against one contact's timeline."""

    def __init__(self, expectation: Expectation, entries: list[LogEntry], contact: ContactState, tz,
                 catalog: _Catalog, start: datetime) -> None:
        self.expectation = expectation
        self.start = start
        self.entries = entries
        self.contact = contact
        self.tz = tz
        self.catalog = catalog
        self.options = expectation.options

    def run(self) -> ExpectationResult:
        return getattr(self, "_" + self.expectation.kind)()

    # --- helpers --------------------------------------------------------------------------------------

    def timed(self, entry: LogEntry) -> bool:
        at = self.expectation.at
        return at is None or abs(entry.at - at) <= self.expectation.tolerance

    def in_workflow(self, entry: LogEntry, workflow: str | None) -> bool:
        return workflow is None or entry.workflow == workflow

    def message_filter(self, exact: bool = True) -> Callable[[LogEntry], bool]:
        """Which timeline lines are the messages this expectation is about (any kind: send, postponed...);
        not `exact`: the same template on any channel, from any workflow and step (the near misses)."""
        value = self.expectation.value
        kind = self.expectation.kind
        options = self.options
        template = options.get("template") if kind == "messages" else (
            None if value in CHANNELS else value)
        channel = options.get("channel") or (value if kind in ("gets", "gets_no") and value in CHANNELS else None)
        if not exact and template is not None:
            channel = None
        workflow, step = (options.get("workflow"), options.get("step")) if exact else (None, None)

        def matches(entry: LogEntry) -> bool:
            return (entry.channel is not None and (channel is None or entry.channel == channel)
                    and (template is None or entry.template == template)
                    and (workflow is None or entry.workflow == workflow) and (step is None or entry.step == step))

        return matches

    def sends_workflows(self) -> list[str]:
        """The workflows that could send what a message expectation is about."""
        if self.options.get("workflow"):
            return [self.options["workflow"]]
        value = self.expectation.value
        kind = self.expectation.kind
        channel = self.options.get("channel") or (value if kind in ("gets", "gets_no") and value in CHANNELS else None)
        template = self.options.get("template") if kind == "messages" else (None if value in CHANNELS else value)
        return self.catalog.workflows_sending(template, channel)

    def result(self, passed: bool, message: str = "", marked: Iterable[LogEntry] = (),
               expected: _Expected | None = None, workflows: Iterable[str] | None = None,
               extra: list[str] | None = None) -> ExpectationResult:
        if passed:
            return ExpectationResult(self.expectation, True)
        marked = list(marked)
        scope = list(workflows) if workflows is not None else []
        scope += [entry.workflow for entry in marked if entry.workflow not in scope]
        if expected is not None and expected.workflow and expected.workflow not in scope:
            scope.append(expected.workflow)
        context = [entry for entry in self.entries if not scope or entry.workflow in scope]
        diff = _diff(context, marked, expected, self.tz, self.expectation.contact, scope)
        return ExpectationResult(self.expectation, False, message, diff + (extra or []))

    def stamp(self, moment: datetime) -> str:
        return _stamp(moment, self.tz)

    def times(self, entries: list[LogEntry]) -> str:
        shown = [self.stamp(entry.at) for entry in entries[:3]]
        more = f" and {len(entries) - 3} more" if len(entries) > 3 else ""
        return ", ".join(shown) + more

    def whereabouts(self, workflow: str) -> str:
        """What became of the contact in `workflow`: never entered, left, finished, or still inside."""
        entries = [entry for entry in self.entries if entry.workflow == workflow]
        if not any(entry.kind == "enter" for entry in entries):
            refused = [entry for entry in entries if entry.kind in ("skip", "failed") and entry.step == "trigger"]
            why = _local_times(refused[0].detail, self.tz) if refused else self.untriggered(workflow)
            return f"{self.expectation.contact} never entered {workflow}" + (f": {why}" if why else "")
        last = entries[-1]
        if last.kind == "exit":
            return f"{self.expectation.contact} left {workflow} at {self.stamp(last.at)}: {last.detail}"
        if last.kind == "complete":
            return f"{self.expectation.contact} finished {workflow} at {self.stamp(last.at)}"
        if last.kind == "failed":
            return f"{workflow} failed at {self.stamp(last.at)}: {_local_times(last.detail, self.tz)}"
        return f"{self.expectation.contact} was still in {workflow} when the run ended"

    def untriggered(self, workflow: str) -> str:
        """Why an event trigger did not fire, when the timeline cannot say: the engine logs nothing for an
        event its trigger's `where` filters out, nor for an event that never came."""
        trigger = self.catalog.workflows[workflow].trigger
        if trigger.kind != "event":
            return ""
        # History (events before the start) triggers nothing.
        events = [event for event in self.contact.events if event.name == trigger.value and event.at >= self.start]
        if not events:
            return f"no {trigger.value} event for {self.expectation.contact} in the run"
        if trigger.where is None:
            return ""
        if len(events) == 1:
            return (f"its {trigger.value} event at {self.stamp(events[0].at)} did not match the trigger's "
                    f"`where: {trigger.where.source}`")
        return (f"{len(events)} {trigger.value} events from {self.stamp(events[0].at)}, none matching the "
                f"trigger's `where: {trigger.where.source}`")

    def whereabouts_all(self, workflows: list[str]) -> str:
        return "; ".join(self.whereabouts(workflow) for workflow in workflows)

    # --- kinds --------------------------------------------------------------------------------------------

    def _gets(self) -> ExpectationResult:
        matches, anywhere = self.message_filter(), self.message_filter(exact=False)
        related = [entry for entry in self.entries if anywhere(entry)]
        sent = [entry for entry in related if entry.kind == "send" and matches(entry)]
        if any(self.timed(entry) for entry in sent):
            return self.result(True)
        elsewhere = [entry for entry in related if entry.kind == "send" and not matches(entry)]
        workflows = self.sends_workflows()
        expected = _Expected(self.expectation.at, workflows[0] if len(workflows) == 1 else "",
                             self.options.get("step", ""), self.what())
        if sent:
            message = f"sent at {self.times(sent)} instead"
        elif elsewhere:
            first = elsewhere[0]
            message = (f"sent as {first.channel} {first.template} by {first.workflow} step {first.step} instead, "
                       f"at {self.stamp(first.at)}")
        elif any(entry.kind == "suppressed" for entry in related):
            first = next(entry for entry in related if entry.kind == "suppressed")
            message = f"not sent: {first.detail}"
        elif any(entry.kind == "postponed" for entry in related):
            message = "postponed, and still not sent when the run ended"
        elif workflows:
            message = f"never sent; {self.whereabouts_all(workflows)}"
        else:
            message = "never sent; no workflow sends it"
        return self.result(False, message, related, expected, workflows)

    def _gets_no(self) -> ExpectationResult:
        matches = self.message_filter()
        sent = [entry for entry in self.entries if entry.kind == "send" and matches(entry)]
        if not sent:
            return self.result(True)
        return self.result(False, f"sent at {self.times(sent)}", sent,
                           workflows=[self.options["workflow"]] if self.options.get("workflow") else [])

    def _messages(self) -> ExpectationResult:
        matches = self.message_filter()
        sent = [entry for entry in self.entries if entry.kind == "send" and matches(entry)]
        if len(sent) == self.expectation.value:
            return self.result(True)
        return self.result(False, f"got {len(sent)}", sent,
                           workflows=[self.options["workflow"]] if self.options.get("workflow") else [])

    def _enters(self) -> ExpectationResult:
        workflow = self.expectation.value
        entered = [entry for entry in self.entries if entry.workflow == workflow and entry.kind == "enter"]
        if any(self.timed(entry) for entry in entered):
            return self.result(True)
        expected = _Expected(self.expectation.at, workflow, "trigger", "enter")
        if entered:
            return self.result(False, f"entered at {self.times(entered)} instead", entered, expected, [workflow])
        refused = [entry for entry in self.entries if entry.workflow == workflow and entry.step == "trigger"]
        return self.result(False, self.whereabouts(workflow), refused, expected, [workflow])

    def _does_not_enter(self) -> ExpectationResult:
        workflow = self.expectation.value
        entered = [entry for entry in self.entries if entry.workflow == workflow and entry.kind == "enter"]
        if not entered:
            return self.result(True)
        return self.result(False, f"entered at {self.times(entered)}: {entered[0].detail}", entered,
                           workflows=[workflow])

    def _exits(self) -> ExpectationResult:
        workflow = self.expectation.value
        reason = self.options.get("reason")
        exits = [entry for entry in self.entries if entry.workflow == workflow and entry.kind == "exit"]
        fitting = [entry for entry in exits if reason is None or reason in entry.detail]
        if any(self.timed(entry) for entry in fitting):
            return self.result(True)
        expected = _Expected(self.expectation.at, workflow, "", "exit", reason or "")
        if fitting:
            return self.result(False, f"exited at {self.times(fitting)} instead", fitting, expected, [workflow])
        if exits:
            return self.result(False, f"exited for another reason: {exits[0].detail}", exits, expected, [workflow])
        ends = [entry for entry in self.entries if entry.workflow == workflow and entry.kind in ("complete", "failed")]
        return self.result(False, self.whereabouts(workflow), ends, expected, [workflow])

    def _completes(self) -> ExpectationResult:
        workflow = self.expectation.value
        done = [entry for entry in self.entries if entry.workflow == workflow and entry.kind == "complete"]
        if any(self.timed(entry) for entry in done):
            return self.result(True)
        expected = _Expected(self.expectation.at, workflow, "end", "complete")
        if done:
            return self.result(False, f"completed at {self.times(done)} instead", done, expected, [workflow])
        ends = [entry for entry in self.entries if entry.workflow == workflow and entry.kind in ("exit", "failed")]
        return self.result(False, self.whereabouts(workflow), ends, expected, [workflow])

    def _converts(self) -> ExpectationResult:
        workflow = self.expectation.value
        goals = [entry for entry in self.entries if entry.workflow == workflow and entry.kind == "goal"]
        if any(self.timed(entry) for entry in goals):
            return self.result(True)
        goal = self.catalog.workflows[workflow].goal  # never None: a `converts` on a workflow without one is refused
        expected = _Expected(self.expectation.at, workflow, "", "goal", goal["event"] if goal else "")
        if goals:
            return self.result(False, f"converted at {self.times(goals)} instead", goals, expected, [workflow])
        ends = [entry for entry in self.entries if entry.workflow == workflow and entry.kind in ("exit", "complete",
                                                                                                  "failed")]
        return self.result(False, f"never converted; {self.whereabouts(workflow)}", ends, expected, [workflow])

    def _does_not_convert(self) -> ExpectationResult:
        workflow = self.expectation.value
        goals = [entry for entry in self.entries if entry.workflow == workflow and entry.kind == "goal"]
        if not goals:
            return self.result(True)
        return self.result(False, f"converted at {self.times(goals)}", goals, workflows=[workflow])

    def _variant(self) -> ExpectationResult:
        spec = self.expectation.value
        workflow, split, variant = spec["workflow"], spec["split"], spec["is"]
        splits = [entry for entry in self.entries if entry.workflow == workflow and entry.kind == "split"
                  and entry.extra.get("split") == split]
        if any(entry.extra.get("variant") == variant for entry in splits):
            return self.result(True)
        expected = _Expected(None, workflow, splits[0].step if splits else "", "split", f"variant {variant}")
        if splits:
            return self.result(False, f"got variant {splits[0].extra.get('variant')}", splits, expected, [workflow])
        return self.result(False, f"never reached the split; {self.whereabouts(workflow)}", [], expected, [workflow])

    def reached(self, step: str, workflow: str | None) -> list[LogEntry]:
        return [entry for entry in self.entries if entry.step == step and self.in_workflow(entry, workflow)
                and entry.kind not in _NOT_RUN
                and not (entry.kind == "exit" and entry.detail.startswith(("exit_on ", "goal ")))]

    def step_workflows(self, step: str) -> list[str]:
        workflow = self.options.get("workflow")
        if workflow:
            return [workflow]
        return [name for name, labels in self.catalog.steps.items() if step in labels]

    def _reaches(self) -> ExpectationResult:
        step = self.expectation.value
        reached = self.reached(step, self.options.get("workflow"))
        if any(self.timed(entry) for entry in reached):
            return self.result(True)
        workflows = self.step_workflows(step)
        expected = _Expected(self.expectation.at, workflows[0] if len(workflows) == 1 else "", step, "reached")
        if reached:
            return self.result(False, f"reached at {self.times(reached)} instead", reached, expected, workflows)
        return self.result(False, f"never reached; {self.whereabouts_all(workflows)}", [], expected, workflows)

    def _does_not_reach(self) -> ExpectationResult:
        step = self.expectation.value
        reached = self.reached(step, self.options.get("workflow"))
        if not reached:
            return self.result(True)
        return self.result(False, f"reached at {self.times(reached)}", reached, workflows=self.step_workflows(step))

    def _fields(self) -> ExpectationResult:
        actual_fields = self.contact.fields
        lines: list[str] = []
        wrong = []
        for name, expected in self.expectation.value.items():
            actual = actual_fields.get(name, BUILTIN_DEFAULTS.get(name))
            if _same(expected, actual):
                continue
            wrong.append(name)
            lines.append(f"  - {name} = {_show(expected)}")
            lines.append(f"  + {name} = {_show(actual)}")
        if not wrong:
            return self.result(True)
        changes = [entry for entry in self.entries if entry.kind in ("update", "score", "lists")]
        message = "; ".join(f"{name} is {_show(actual_fields.get(name, BUILTIN_DEFAULTS.get(name)))}"
                            for name in wrong)
        context = _diff(changes, [], None, self.tz, self.expectation.contact, []) if changes else []
        return ExpectationResult(self.expectation, False, message,
                                 [line for line in context if not line.startswith("    (")] + lines)

    def _fails(self) -> ExpectationResult:
        workflow = self.expectation.value
        reason = self.options.get("reason")
        failed = [entry for entry in self.entries if entry.workflow == workflow and entry.kind == "failed"]
        if any(reason is None or reason in entry.detail for entry in failed):
            return self.result(True)
        expected = _Expected(None, workflow, "", "failed", reason or "")
        if failed:
            return self.result(False, f"failed for another reason: {failed[0].detail}", failed, expected, [workflow])
        return self.result(False, f"nothing failed; {self.whereabouts(workflow)}", [], expected, [workflow])

    def what(self) -> str:
        value = self.expectation.value
        channel = self.options.get("channel")
        if value in CHANNELS:
            return value
        channels = [channel] if channel else self.catalog.channels_of(value)
        return f"{'/'.join(channels)} {value}"


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, list) and isinstance(actual, (list, tuple, set)):
        return sorted(map(str, expected)) == sorted(map(str, actual))
    return expected == actual


def _show(value: Any) -> str:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return repr(value)


# --- describing ------------------------------------------------------------------------------------------

TIME_FORMAT = "%a %d %b %H:%M %Z"  # as `mauto simulate` shows times


def _stamp(moment: datetime, tz) -> str:
    return moment.astimezone(tz).strftime(TIME_FORMAT)


def describe(expectation: Expectation, catalog: _Catalog, tz) -> str:
    """An expectation in words: "c01 gets cart/reminder-1 at +1h (Tue 24 Nov 10:00 CET)"."""
    contact, kind, value, options = expectation.contact, expectation.kind, expectation.value, expectation.options
    channel = options.get("channel")
    if kind in ("gets", "gets_no"):
        if value in CHANNELS:
            text = f"{contact} gets an {value}" if kind == "gets" else f"{contact} gets no {value}"
        else:
            thing = f"{channel} {value}" if channel else value
            text = f"{contact} gets {thing}" if kind == "gets" else f"{contact} gets no {thing}"
    elif kind == "messages":
        text = f"{contact} gets {value} message{'' if value == 1 else 's'}"
        if channel:
            text = f"{contact} gets {value} {channel} message{'' if value == 1 else 's'}"
        if options.get("template"):
            text += f" from template {options['template']}"
    elif kind == "enters":
        text = f"{contact} enters {value}"
    elif kind == "does_not_enter":
        text = f"{contact} does not enter {value}"
    elif kind == "exits":
        text = f"{contact} exits {value}" + (f" ({options['reason']})" if options.get("reason") else "")
    elif kind == "completes":
        text = f"{contact} completes {value}"
    elif kind == "converts":
        text = f"{contact} converts in {value}"
    elif kind == "does_not_convert":
        text = f"{contact} does not convert in {value}"
    elif kind == "variant":
        text = f"{contact} is in variant {value['is']} of {value['split']} ({value['workflow']})"
    elif kind == "reaches":
        text = f"{contact} reaches {value}"
    elif kind == "does_not_reach":
        text = f"{contact} does not reach {value}"
    elif kind == "fields":
        text = f"{contact} ends with " + ", ".join(f"{name} = {_show(item)}" for name, item in value.items())
    else:
        text = f"{contact} fails in {value}" + (f" ({options['reason']})" if options.get("reason") else "")
    if options.get("workflow") and kind not in ("enters", "does_not_enter", "exits", "completes", "converts",
                                                "does_not_convert", "fails"):
        text += f" in {options['workflow']}"
    if options.get("step") and kind in ("gets", "gets_no"):
        text += f" at step {options['step']}"
    if expectation.at is not None:
        written = str(options["at"])
        local = _stamp(expectation.at, tz)
        text += f" at {written} ({local})" if written.strip().startswith(("+", "-")) else f" at {local}"
        if expectation.tolerance:
            text += f" ±{format_duration(expectation.tolerance)}"
    return text


def _diff(context: list[LogEntry], marked: list[LogEntry], expected: _Expected | None, tz, contact: str,
          workflows: list[str]) -> list[str]:
    """The timeline as a diff: `-` the expected line at its time, `+` the lines that happened instead,
    the other lines of the same workflows for context. Times in the contact's zone."""
    marked_ids = {id(entry) for entry in marked}
    entries = list(context) + [entry for entry in marked if id(entry) not in {id(e) for e in context}]
    order = {id(entry): index for index, entry in enumerate(entries)}
    entries.sort(key=lambda entry: (entry.at, order[id(entry)]))
    rows: list[tuple[str, str, str, str, str, str]] = []  # prefix, time, workflow, step, what, detail
    for entry in entries:
        prefix = "+" if id(entry) in marked_ids else " "
        rows.append((prefix, _stamp(entry.at, tz), entry.workflow, entry.step, _what(entry),
                     _local_times(entry.detail, tz) if entry.detail else ""))
    if expected is not None:
        row = ("-", _stamp(expected.at, tz) if expected.at is not None else "any time", expected.workflow,
               expected.step, expected.what, expected.detail)
        # Where a diff puts it: at its time, before any `+` line of the same moment; without a time,
        # just before the first `+` line, else at the end.
        if expected.at is not None:
            position = next((index for index, entry in enumerate(entries) if entry.at > expected.at or (
                entry.at == expected.at and id(entry) in marked_ids)), len(rows))
        else:
            position = next((index for index, entry in enumerate(entries) if id(entry) in marked_ids), len(rows))
        rows.insert(position, row)
    if not entries:
        where = f" in {', '.join(workflows)}" if workflows else ""
        note = f"    (nothing happened to {contact}{where})"
        return [_row_text(row, _widths(rows)) for row in rows] + [note]
    widths = _widths(rows)
    return [_row_text(row, widths) for row in rows]


def _widths(rows: Sequence[tuple[str, ...]]) -> list[int]:
    return [max((len(row[index]) for row in rows), default=0) for index in range(len(rows[0]))] if rows else []


def _row_text(row: tuple[str, ...], widths: list[int]) -> str:
    prefix, *columns = row
    cells = [column.ljust(widths[index + 1]) for index, column in enumerate(columns[:-1]) if widths[index + 1]]
    return f"  {prefix} " + "  ".join(cells + [columns[-1]]).rstrip()


# --- output ---------------------------------------------------------------------------------------------

def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(run: ScenarioRun) -> str:
    """pytest's last line: "1 failed, 13 passed, 1 error in 3 scenario files"."""
    parts = []
    if run.failed:
        parts.append(f"{run.failed} failed")
    parts.append(f"{run.passed} passed")
    if run.errors:
        parts.append(_plural(run.errors, "error"))
    return f"{', '.join(parts)} in {_plural(len(run.scenarios), 'scenario file')}"


def text_lines(run: ScenarioRun, verbose: bool = False) -> list[str]:
    """The report for a terminal: a line per file, then each failure with its diff, then the summary."""
    lines: list[str] = []
    for scenario in run.scenarios:
        if scenario.problems:
            lines.append(f"ERROR {scenario.path}: not a valid scenario")
        elif scenario.failed:
            lines.append(f"FAIL  {scenario.path}: {scenario.failed} of {len(scenario.results)} failed")
        else:
            lines.append(f"PASS  {scenario.path}: {_plural(scenario.passed, 'expectation')}")
        if verbose:
            for result in scenario.results:
                lines.append(f"      {'ok    ' if result.passed else 'FAILED'} {result.expectation.text}")
    details: list[str] = []
    for scenario in run.scenarios:
        for problem in scenario.problems:
            details.append(f"{problem.path}:{problem.line}:{problem.col}: {problem.message}")
        for result in scenario.results:
            if result.passed:
                continue
            expectation = result.expectation
            if details:
                details.append("")
            details.append(f"{scenario.path}:{expectation.pos.line}:{expectation.pos.col}: {expectation.text}: "
                           f"{result.message}")
            details.extend(result.diff)
    if details:
        lines.append("")
        lines.extend(details)
    lines.append("")
    lines.append(summary(run))
    return lines


def line_style(line: str) -> str:
    """A rich style for a line of `text_lines`: diffs in red and green, statuses by outcome."""
    if line.startswith("  - "):
        return "red"
    if line.startswith("  + "):
        return "green"
    if line.startswith(("FAIL", "ERROR", "      FAILED")):
        return "red bold"
    if line.startswith("PASS"):
        return "green"
    if line.startswith("    "):
        return "dim"
    return ""


def as_json(run: ScenarioRun) -> str:
    return json.dumps({
        "scenarios": [scenario.as_dict() for scenario in run.scenarios],
        "summary": {"passed": run.passed, "failed": run.failed, "errors": run.errors, "files": len(run.scenarios)},
    }, indent=2, ensure_ascii=False)


def github_lines(run: ScenarioRun) -> list[str]:
    """GitHub Actions workflow commands: an error annotation per failed expectation and per invalid file."""
    from mauto.lint.formatters import _escape_data, _escape_property

    lines = []
    for scenario in run.scenarios:
        for problem in scenario.problems:
            lines.append(f"::error file={_escape_property(problem.path)},line={problem.line},col={problem.col},"
                         f"title={_escape_property('invalid scenario')}::{_escape_data(problem.message)}")
        for result in scenario.results:
            if result.passed:
                continue
            expectation = result.expectation
            message = "\n".join([result.message, *result.diff])
            lines.append(f"::error file={_escape_property(scenario.path)},line={expectation.pos.line},"
                         f"col={expectation.pos.col},title={_escape_property(expectation.text)}::"
                         f"{_escape_data(message)}")
    return lines
