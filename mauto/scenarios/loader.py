"""Reading scenario files: finding them, their YAML and schema, then everything they name checked against the
project (contacts and their fields, events, data files, workflows, templates, steps, splits), each mistake a
problem at its line and column, all of them collected before anything runs."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mauto.config import Project
from mauto.datafiles import DataError, coerce, parse_time
from mauto.engine.records import ContactState, Event
from mauto.engine.timing import contact_zone, zone
from mauto.errors import UsageError, YamlError
from mauto.problem import Problem
from mauto.scenarios.catalog import Catalog
from mauto.scenarios.diff import stamp
from mauto.scenarios.expectations import KINDS, describe
from mauto.scenarios.model import Expectation, Scenario, ScenarioResult
from mauto.scenarios.schema import schema_problems
from mauto.simulate import EVENT_KEYS, Samples, load_contacts, load_events, load_mapping
from mauto.workflow.durations import DurationError, parse_duration
from mauto.workflow.explain import article
from mauto.workflow.loader import Document, JsonPath, load
from mauto.workflow.schema import suggest

SCENARIO_SUFFIXES = (".yaml", ".yml")
SCENARIOS_DIR = "scenarios"
DEFAULT_HORIZON = "30d"
RULE = "scenario"  # the rule of a problem the schema does not find: an unknown contact, workflow, template...


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


# --- the file on its own: YAML, schema, start -------------------------------------------------------------

@dataclass
class Draft:
    """A scenario file that parsed and passed the schema, not yet checked against the project."""

    path: Path
    document: Document
    result: ScenarioResult
    start: datetime = datetime.min.replace(tzinfo=UTC)


def read_draft(path: Path, project: Project) -> Draft:
    """The file read and checked on its own; its problems (if any) are on `draft.result.problems`."""
    shown = project.display(path)
    result = ScenarioResult(shown, path.stem)
    try:
        document = load(path, shown)
    except YamlError as error:
        result.problems.append(_from_error(error, shown, "yaml-syntax"))
        return Draft(path, Document(shown, "", None), result)
    draft = Draft(path, document, result)
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
    return Problem(document.path, pos.line, pos.col, RULE, message, json_path=tuple(path))


def _from_error(error: YamlError | DataError, shown: str, rule: str = RULE) -> Problem:
    """A problem reported in another file (a data file) or before the document exists (its YAML)."""
    return Problem(error.path or shown, error.line or 1, error.col or 1, rule, error.message)


# --- the file against the project ------------------------------------------------------------------------

class Loader:
    """Turns a schema-valid scenario document into a Scenario, collecting every problem with its place.

    The expectation kinds read their own values through it (`mauto.scenarios.expectations.Reader`).
    """

    def __init__(self, project: Project, catalog: Catalog, draft: Draft) -> None:
        self.project = project
        self.catalog = catalog
        self.draft = draft
        self.document = draft.document
        self.data: dict = draft.document.data
        self.problems = draft.result.problems

    def problem(self, path: JsonPath, message: str, key: bool = False) -> None:
        self.problems.append(_at(self.document, path, message, key))

    def load(self) -> Scenario | None:
        """The scenario, or None when it has problems (then on `draft.result.problems`)."""
        data = self.data
        start = self.draft.start
        end = start + parse_duration(data.get("for", DEFAULT_HORIZON))  # the schema has checked its form
        chosen = [self.catalog.workflows[workflow_id] for index, workflow_id in enumerate(data.get("workflows") or [])
                  if self.known_workflow(workflow_id, ("workflows", index))]
        workflows = chosen if data.get("workflows") else list(self.catalog.workflows.values())
        contacts = self.contacts()
        # Contacts that could not be read would make every event and expectation an "unknown contact".
        known = {contact.id for contact in contacts} if contacts is not None else None
        contacts = contacts or []
        events = self.events(start, known) if "events" in data and known is not None else []
        coupons = self.mapping("coupons")
        webhooks = self.mapping("webhooks")
        zones: dict[str, str] = defaultdict(lambda: self.project.timezone)
        zones.update({contact.id: contact_zone(contact.fields, self.project.timezone) for contact in contacts})
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
                self.problems.append(_from_error(error, str(path)))
                return None
        contacts: dict[str, ContactState] = {}
        for index, row in enumerate(value):
            contact_id = str(row["id"])
            if not contact_id:
                self.problem(("contacts", index, "id"), "`id` must not be empty")
            elif contact_id in contacts:
                self.problem(("contacts", index, "id"), f"duplicate contact id `{contact_id}`")
            else:
                contacts[contact_id] = ContactState(contact_id, self.contact_fields(index, contact_id, row))
        return list(contacts.values())

    def contact_fields(self, index: int, contact_id: str, row: dict[str, Any]) -> dict[str, Any]:
        """A contact row's fields, read with their declared types."""
        fields = self.project.contact_fields
        values: dict[str, Any] = {}
        for name, item in row.items():
            if name == "id":
                continue
            if name not in fields:
                hint = suggest(name, list(fields)) or "; declare it under `contact_fields` in mauto.yaml"
                self.problem(("contacts", index, name), f"unknown contact field `{name}`{hint}", key=True)
                continue
            try:
                values[name] = coerce(item, fields[name], self.project.timezone)
            except ValueError as error:
                self.problem(("contacts", index, name), f"contact `{contact_id}`, field `{name}`: {error}")
        return values

    def events(self, start: datetime, known: set[str]) -> list[Event]:
        value = self.data["events"]
        if isinstance(value, str):
            path = self.data_file("events")
            if path is None:
                return []
            try:
                return load_events(path, self.project, start, known)
            except DataError as error:
                self.problems.append(_from_error(error, str(path)))
                return []
        events = []
        for index, row in enumerate(value):
            contact = str(row["contact"])
            if contact not in known:
                self.problem(("events", index, "contact"), f"event for unknown contact `{contact}`"
                             f"{suggest(contact, sorted(known))}")
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
            self.problems.append(_from_error(error, str(path)))
            return {}

    # --- what expectations name (the kinds' Reader) ----------------------------------------------------

    def known_workflow(self, workflow_id: str, path: JsonPath) -> bool:
        if workflow_id in self.catalog.workflows:
            return True
        self.problem(path, f"no workflow `{workflow_id}` in this project"
                           f"{suggest(workflow_id, sorted(self.catalog.workflows))}")
        return False

    def known_template(self, template: str, channel: str | None, path: JsonPath) -> bool:
        channels = self.catalog.channels_of(template)
        if channel in channels or (channel is None and channels):
            return True
        if channels:
            suffix = ".email.html" if channel == "email" else ".sms.txt"
            self.problem(path, f"no {channel} template `{template}` (templates/{template}{suffix}); "
                               f"`{template}` is {article(channels[0])} template")
            return False
        files = (f"templates/{template}.email.html" if channel == "email" else
                 f"templates/{template}.sms.txt" if channel == "sms" else
                 f"templates/{template}.email.html or .sms.txt")
        self.problem(path, f"no template `{template}` ({files}){suggest(template, sorted(self.catalog.templates))}")
        return False

    def known_step(self, step: str, workflow: str | None, path: JsonPath) -> None:
        if workflow is not None and workflow not in self.catalog.steps:
            return  # already reported
        candidates = [workflow] if workflow is not None else list(self.catalog.steps)
        labels = [label for name in candidates for label in self.catalog.steps[name]]
        if step not in labels:
            where = f"workflow `{workflow}`" if workflow else "any workflow"
            self.problem(path, f"no step `{step}` in {where}{suggest(step, sorted(set(labels)))}")

    # --- expectations ---------------------------------------------------------------------------------

    def expectation(self, index: int, item: dict, known: set[str] | None, start: datetime, end: datetime,
                    zones: dict[str, str]) -> Expectation | None:
        """One item of `expect:`: what every kind has (contact, workflow, step, at, tolerance) read here, the
        rest by its kind. None when it has a problem."""
        where = ("expect", index)
        kind = next(name for name in KINDS if name in item)  # the schema guarantees exactly one
        contact = str(item["contact"])
        count = len(self.problems)
        if known is not None and contact not in known:
            self.problem(where + ("contact",), f"no contact `{contact}` in this scenario"
                                               f"{suggest(contact, sorted(known))}")
        options = {key: item[key] for key in item if key not in ("contact", kind)}
        expectation = Expectation(kind, contact, item[kind], self.document.pos(where), options)
        workflow = options.get("workflow")
        if workflow is not None:
            self.known_workflow(workflow, where + ("workflow",))
        KINDS[kind].read(self, expectation, where)
        if "step" in options:
            self.known_step(options["step"], workflow, where + ("step",))
        tz = zone(zones[contact])
        if "at" in options:
            self.moment(expectation, where, start, end, tz)
        if "tolerance" in options:
            try:
                expectation.tolerance = parse_duration(options["tolerance"])
            except DurationError as error:  # the schema's pattern lets very few bad ones through
                self.problem(where + ("tolerance",), f"`tolerance`: {error}")
        if len(self.problems) > count:
            return None
        expectation.text = describe(expectation, tz)
        return expectation

    def moment(self, expectation: Expectation, where: JsonPath, start: datetime, end: datetime, tz: Any) -> None:
        """The expectation's `at`, which must fall inside the run."""
        try:
            expectation.at = parse_time(expectation.options["at"], start, self.project.timezone)
        except ValueError as error:
            self.problem(where + ("at",), f"`at`: {error}")
            return
        if expectation.at < start:
            self.problem(where + ("at",), f"`at` is before the run starts ({stamp(start, tz)}); "
                                          "nothing can happen then")
        elif expectation.at >= end:
            self.problem(where + ("at",), f"`at` is after the run ends ({stamp(end, tz)}: `start` + "
                                          f"{self.data.get('for', DEFAULT_HORIZON)}); make `for` longer")
