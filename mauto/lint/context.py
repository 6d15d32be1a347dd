"""What the lint rules look at: the project, every workflow file (parsed, validated, built) and templates."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from mauto.config import Project
from mauto.errors import YamlError
from mauto.lint.problem import Problem
from mauto.templates import TemplateSet
from mauto.workflow.expressions import Expression, ExpressionError
from mauto.workflow.loader import Document, JsonPath, Pos, load
from mauto.workflow.model import Step, Workflow, build
from mauto.workflow.schema import validate


@dataclass
class SourceFile:
    """A YAML file of the project (a workflow or mauto.yaml) and what loading it found."""

    path: Path
    display: str
    kind: str  # "workflow" or "project"
    document: Document | None = None
    yaml_error: YamlError | None = None
    schema_problems: list[Problem] = field(default_factory=list)  # each with the JSON path it is about
    workflow: Workflow | None = None

    @cached_property
    def lines(self) -> list[str]:
        return self.document.text.split("\n") if self.document else []


@dataclass(frozen=True)
class ExpressionSite:
    """An expression in a file, and the event its `event` name stands for there (None: no event in scope)."""

    file: SourceFile
    expression: Expression
    json_path: JsonPath
    event: str | None
    event_in_scope: bool = True


def load_source(path: Path, display: str, kind: str, document: Document | None = None,
                load_error: YamlError | None = None, fast: bool = False) -> SourceFile:
    source = SourceFile(path, display, kind)
    if load_error is not None:
        source.yaml_error = load_error
        return source
    try:
        source.document = document or load(path, display)
    except YamlError as error:
        source.yaml_error = error
        return source
    if source.document.data is None:
        source.yaml_error = YamlError("the file is empty", display, 1, 1)
        return source
    source.schema_problems = validate(source.document, kind, fast)
    if kind == "workflow" and not source.schema_problems:
        source.workflow = build(source.document)
    return source


class LintContext:
    """Everything a rule may ask about. Rules only read it."""

    def __init__(self, project: Project, project_file: SourceFile, files: list[SourceFile], now: datetime,
                 base: str | None = None) -> None:
        self.project = project
        self.project_file = project_file
        self.files = files
        self.now = now
        self.base = base
        self.templates = TemplateSet(project.templates_dir, project.display_root)

    @property
    def project_valid(self) -> bool:
        return self.project_file.document is not None and not self.project_file.schema_problems

    @cached_property
    def workflows(self) -> list[tuple[SourceFile, Workflow]]:
        return [(file, file.workflow) for file in self.files if file.workflow is not None]

    @cached_property
    def workflow_ids(self) -> set[str]:
        ids = set()
        for file in self.files:
            data = file.document.data if file.document else None
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                ids.add(data["id"])
        return ids

    # --- places -------------------------------------------------------------

    def schema_findings(self, rule: str) -> Iterator[Problem]:
        """What the schema found under `rule` (each schema problem names its rule), in mauto.yaml and every
        workflow: the rules that the schema checks yield these first."""
        for file in [self.project_file, *self.files]:
            for problem in file.schema_problems:
                if problem.rule == rule:
                    yield self.problem(file, problem.pos, problem.message)

    def problem(self, file: SourceFile, where: JsonPath | Pos, message: str, key: bool = False) -> Problem:
        """A finding in `file` at a JSON path (its value, or with `key` its key) or at a Pos."""
        if isinstance(where, Pos):
            pos = where
        elif file.document is None:
            pos = Pos(1, 1)
        else:
            pos = file.document.key_pos(where) if key else file.document.pos(where)
        return Problem(file.display, pos.line, pos.col, message=message)

    def expression_pos(self, site: ExpressionSite, offset: int) -> Pos:
        """Where `offset` in the expression's source falls in the file (the value's start when unsure)."""
        pos = site.expression.pos
        if offset < 0 or pos.style in ("|", ">"):
            return pos
        quote = 1 if pos.style in ("'", '"') else 0
        lines = site.file.lines
        if 0 < pos.line <= len(lines):
            start = pos.col - 1 + quote
            raw = lines[pos.line - 1][start:start + offset]
            if raw == site.expression.source[:offset]:
                return Pos(pos.line, pos.col + quote + offset)
        return pos

    # --- walking ------------------------------------------------------------

    def expression_sites(self) -> Iterator[ExpressionSite]:
        """Every expression of every valid workflow and of mauto.yaml's segments."""
        for file, workflow in self.workflows:
            yield from self.workflow_expressions(file, workflow)
        if self.project_valid:
            for name, expression in self.project.segments.items():
                yield ExpressionSite(self.project_file, expression, ("segments", name), None, False)

    def workflow_expressions(self, file: SourceFile, workflow: Workflow) -> Iterator[ExpressionSite]:
        document = file.document
        if document is None:  # a file that did not load has no workflow: nothing to look at
            return
        trigger = workflow.trigger
        entry_event = trigger.value if trigger.kind == "event" else None
        entry_scope = trigger.kind == "event"
        if trigger.where is not None:
            yield ExpressionSite(file, trigger.where, ("trigger", "where"), entry_event)
        if trigger.kind == "segment" and trigger.value not in self.project.segments \
                and not is_segment_name(trigger.value):
            expression = Expression(trigger.value, file.display, document.pos(("trigger", "segment")))
            yield ExpressionSite(file, expression, ("trigger", "segment"), None, False)
        if trigger.kind == "inactivity" and "where" in trigger.value:
            expression = Expression(trigger.value["where"], file.display,
                                    document.pos(("trigger", "inactivity", "where")))
            yield ExpressionSite(file, expression, ("trigger", "inactivity", "where"), trigger.value["event"])
        if workflow.audience is not None:
            yield ExpressionSite(file, workflow.audience, ("audience",), entry_event, entry_scope)
        for index, (event, condition) in enumerate(workflow.exit_on):
            if condition is not None:
                yield ExpressionSite(file, condition, ("exit_on", index, "where"), event)
        if workflow.goal and "where" in workflow.goal:
            expression = Expression(workflow.goal["where"], file.display, document.pos(("goal", "where")))
            yield ExpressionSite(file, expression, ("goal", "where"), workflow.goal["event"])
        for step in workflow.iter_steps():
            if step.expression is None:
                continue
            if step.kind == "if":
                yield ExpressionSite(file, step.expression, step.path + ("if",), entry_event, entry_scope)
            elif step.kind == "wait_for":
                yield ExpressionSite(file, step.expression, step.path + ("wait_for", "where"), step.value["event"])

    def nested_sites(self, site: ExpressionSite) -> Iterator[ExpressionSite]:
        """The `where=` strings given to has_event/event_count inside a parsed expression."""
        try:
            uses = site.expression.uses
        except ExpressionError:
            return
        for use in uses:
            if use.kind == "nested":
                pos = self.expression_pos(site, use.offset)
                yield ExpressionSite(site.file, Expression(use.name, site.file.display, Pos(pos.line, pos.col)),
                                     site.json_path, use.detail, True)

    @cached_property
    def _all_expression_sites(self) -> list[ExpressionSite]:
        sites = []
        for site in self.expression_sites():
            sites.append(site)
            sites.extend(self.nested_sites(site))
        return sites

    def all_expression_sites(self) -> Iterator[ExpressionSite]:
        """Every expression site, with the `where=` strings nested in them, built once."""
        return iter(self._all_expression_sites)

    def sends(self) -> Iterator[tuple[SourceFile, Workflow, Step, str]]:
        """Every email and SMS step, with its template's file name (`cart/reminder-1.email.html`)."""
        for file, workflow in self.workflows:
            for step in workflow.iter_steps():
                if step.kind in ("email", "sms"):
                    yield file, workflow, step, self.templates.file_name(step.kind, step.value)

    def template_files(self) -> list[str]:
        """Every template file under templates/, as loader names."""
        return self._template_files

    @cached_property
    def _template_files(self) -> list[str]:
        return sorted(name for name in self.templates.files if name.endswith((".html", ".txt")))

    @cached_property
    def template_string_infos(self) -> list[tuple[SourceFile, Workflow, Step, JsonPath, Any]]:
        """Each template string of each workflow, analysed: (file, workflow, step, path, TemplateInfo)."""
        found = []
        for file, workflow in self.workflows:
            document = file.document
            if document is None:  # a file that did not load has no workflow: nothing to look at
                continue
            for path, source, step in self.template_strings(file, workflow):
                info = self.templates.analyse_string(source, file.display, document.pos(path))
                found.append((file, workflow, step, path, info))
        return found

    def template_string_infos_of(self, workflow: Workflow) -> list[tuple[SourceFile, Workflow, Step, JsonPath, Any]]:
        """The analysed template strings of one workflow."""
        return self._template_strings_by_workflow.get(id(workflow), [])

    @cached_property
    def _template_strings_by_workflow(self) -> dict[int, list]:
        grouped: dict[int, list] = {}
        for entry in self.template_string_infos:
            grouped.setdefault(id(entry[1]), []).append(entry)
        return grouped

    def vars_before(self, workflow: Workflow) -> dict[JsonPath, set[str]]:
        """For each step, the `vars` names set by the steps before it (document order) and by itself."""
        available: set[str] = set()
        result: dict[JsonPath, set[str]] = {}
        for step in workflow.iter_steps():
            own = set(step.raw.get("vars", {}) or {}) if step.kind in ("email", "sms") else set()
            result[step.path] = available | own
            if step.kind in ("assign_coupon", "webhook") and "as" in step.value:
                available = available | {step.value["as"]}
                if step.kind == "assign_coupon" and "valid_for" in step.value:  # the code's expiry, beside it
                    available = available | {f"{step.value['as']}_expires_at"}
        return result

    def template_strings(self, file: SourceFile, workflow: Workflow) -> Iterator[tuple[JsonPath, str, Step]]:
        """String values that are templates: step `vars`, `update.set`, `task` and `webhook` fields."""
        for step in workflow.iter_steps():
            roots: list[tuple[JsonPath, Any]] = []
            if step.kind in ("email", "sms") and isinstance(step.raw.get("vars"), dict):
                roots.append((step.path + ("vars",), step.raw["vars"]))
            elif step.kind == "update" and "set" in step.value:
                roots.append((step.path + ("update", "set"), step.value["set"]))
            elif step.kind == "task":
                roots.extend((step.path + ("task", key), step.value[key])
                             for key in ("title", "assignee", "notes") if key in step.value)
            elif step.kind == "webhook":
                roots.extend((step.path + ("webhook", key), step.value[key])
                             for key in ("url", "headers", "body") if key in step.value)
            for path, value in roots:
                for leaf_path, leaf in _strings(path, value):
                    yield leaf_path, leaf, step


def is_segment_name(value: str) -> bool:
    """A bare slug (`best-customers`, `vip`) names a segment; anything else is an expression."""
    return bool(re.fullmatch(r"[a-z][a-z0-9_-]*", value)) and value not in ("contact", "event", "vars", "now")


def _strings(path: JsonPath, value: Any) -> Iterator[tuple[JsonPath, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(path + (key,), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(path + (index,), item)
