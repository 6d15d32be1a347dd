"""The typed workflow model, built from a document the schema has accepted.

Every step keeps its JSON path, so anything that reports on it can ask the
document for the line and column of any of its keys or values.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from mauto.workflow.durations import parse_duration
from mauto.workflow.expressions import Expression
from mauto.workflow.loader import Document, JsonPath

ACTIONS = ("wait", "wait_for", "email", "sms", "if", "split", "update", "score", "lists", "task", "webhook",
           "assign_coupon", "start", "exit")
TRIGGER_KINDS = ("event", "segment", "date", "schedule", "inactivity")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(slots=True)
class Step:
    """One step: `kind` is its action key, `value` the action's value as written."""

    kind: str
    path: JsonPath
    value: Any
    id: str | None = None
    name: str | None = None
    # The children blocks by name: then/else, on_event/on_timeout, or one per split variant.
    blocks: dict[str, list[Step]] = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How messages name the step: its id in backticks, or its number (`3.then.1`) when it has none."""
        return f"`{self.id}`" if self.id else self.place

    @property
    def place(self) -> str:
        """The step's place, 1-based, whatever its id: `5`, `6.on_timeout.1.then.1`, `2.question.1`."""
        parts = []
        for part in self.path:
            if isinstance(part, int):
                parts.append(str(part + 1))
            elif part not in ("steps", "split", "variants"):
                parts.append(part)
        return ".".join(parts)

    # Typed views of the action's value -------------------------------------------------
    @property
    def duration(self) -> timedelta | None:
        """A `wait` of a fixed length."""
        return parse_duration(self.value) if self.kind == "wait" and isinstance(self.value, str) else None

    @property
    def expression(self) -> Expression | None:
        return self.raw.get("_expression")

    def iter_steps(self) -> Iterator[Step]:
        """This step and every step nested in it, in document order."""
        yield self
        for block in self.blocks.values():
            for child in block:
                yield from child.iter_steps()


@dataclass(slots=True)
class Trigger:
    kind: str
    value: Any
    where: Expression | None = None
    on: str = "enter"  # a segment trigger: enter when the contact starts matching, leaves, or both


@dataclass(slots=True)
class Workflow:
    """A workflow file, typed. `document` keeps the source and every position."""

    id: str
    version: int
    name: str
    category: str
    trigger: Trigger
    steps: list[Step]
    document: Document
    audience: Expression | None = None
    reentry: str | timedelta = "never"
    exit_on: list[tuple[str, Expression | None]] = field(default_factory=list)
    goal: dict | None = None
    settings: dict = field(default_factory=dict)
    in_flight: str = "finish"
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    owner: str | None = None
    all_steps: list[Step] = field(default_factory=list)  # every step, nested ones too, in document order

    @property
    def path(self) -> str:
        return self.document.path

    @property
    def marketing(self) -> bool:
        return self.category == "marketing"

    def iter_steps(self) -> Iterator[Step]:
        return iter(self.all_steps)

    def step_labels(self) -> dict[str, str]:
        """Each step's path key (`steps.2.then.0`) -> how the step log names it: its id, or its 1-based path
        (`3.then.1`); as the engine's `Program.labels`."""
        return {".".join(str(part) for part in step.path): step.id or step.label for step in self.all_steps}

    @property
    def content_hash(self) -> str:
        return content_hash(self.document.data)


def content_hash(data: Any) -> str:
    """The hash of a workflow's content: its data, not its bytes (comments and layout do not count)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _expression(source: str, document: Document, path: JsonPath) -> Expression:
    return Expression(source, document.path, document.pos(path))


def _build_steps(items: list[dict], document: Document, path: JsonPath) -> list[Step]:
    return [_build_step(item, document, path + (index,)) for index, item in enumerate(items)]


def _build_step(item: dict, document: Document, path: JsonPath) -> Step:
    kind = next(key for key in ACTIONS if key in item)
    step = Step(kind, path, item[kind], item.get("id"), item.get("name"), raw=item)
    if kind == "if":
        step.raw = {**item, "_expression": _expression(item["if"], document, path + ("if",))}
        step.blocks["then"] = _build_steps(item.get("then", []), document, path + ("then",))
        if "else" in item:
            step.blocks["else"] = _build_steps(item["else"], document, path + ("else",))
    elif kind == "wait_for":
        where = item["wait_for"].get("where")
        if where is not None:
            step.raw = {**item, "_expression": _expression(where, document, path + ("wait_for", "where"))}
        for block in ("on_event", "on_timeout"):
            if block in item:
                step.blocks[block] = _build_steps(item[block], document, path + (block,))
    elif kind == "split":
        for variant, spec in item["split"]["variants"].items():
            step.blocks[variant] = _build_steps(spec.get("steps", []), document,
                                                path + ("split", "variants", variant, "steps"))
    return step


def build(document: Document) -> Workflow:
    """Build the model of a workflow document the schema has accepted."""
    data = document.data
    trigger_data = data["trigger"]
    kind = next(key for key in TRIGGER_KINDS if key in trigger_data)
    where = trigger_data.get("where") if kind == "event" else None
    trigger = Trigger(kind, trigger_data[kind],
                      _expression(where, document, ("trigger", "where")) if where is not None else None,
                      trigger_data.get("on", "enter") if kind == "segment" else "enter")
    reentry_data = data.get("reentry", "never")
    reentry = parse_duration(reentry_data["after"]) if isinstance(reentry_data, dict) else reentry_data
    exit_on: list[tuple[str, Expression | None]] = []
    for index, item in enumerate(data.get("exit_on", [])):
        if isinstance(item, str):
            exit_on.append((item, None))
        else:
            condition = item.get("where")
            exit_on.append((item["event"], _expression(condition, document, ("exit_on", index, "where"))
                            if condition is not None else None))
    audience = data.get("audience")
    workflow = Workflow(
        id=data["id"], version=data["version"], name=data["name"],
        category=data.get("category", "marketing"), trigger=trigger,
        steps=_build_steps(data["steps"], document, ("steps",)), document=document,
        audience=_expression(audience, document, ("audience",)) if audience is not None else None,
        reentry=reentry, exit_on=exit_on, goal=data.get("goal"), settings=data.get("settings", {}),
        in_flight=data.get("in_flight", "finish"), description=data.get("description"),
        tags=data.get("tags", []), owner=data.get("owner"),
    )
    workflow.all_steps = [nested for step in workflow.steps for nested in step.iter_steps()]
    return workflow
