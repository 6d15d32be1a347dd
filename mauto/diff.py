"""`mauto diff`: what a change does to the workflows, read as a reviewer reads it.

Two sides, each a whole project (a git ref, the working tree, or what the store runs), are compared workflow by
workflow (by id): workflows added and removed; a changed workflow's trigger, audience and other settings; its
steps added, removed, moved and changed; what becomes of the contacts inside it when it is deployed (its
`in_flight` policy, with the store's numbers when the base is what the store runs); then the templates whose
text changed, with a unified diff and the steps that send them, and the settings of mauto.yaml.

Steps are matched by their id first (a split also by its own id), then, block by block, by place: the steps
of a block are aligned as a text diff aligns lines (equal steps pair up, so a step inserted above does not make
every later step "changed"), and what is left in a changed stretch pairs up by kind, in order (`wait 24h` →
`wait 48h` is one changed step). A pair is "moved" when it is in another block (another branch, variant or
parent) or out of order among the pairs of its block; shifting down because a step was inserted above is not a
move. Pure: it reads the two projects, returns data, and renders it as text (rich), Markdown or JSON.
"""
from __future__ import annotations

import difflib
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rich.text import Text

from mauto.config import Project, load_project
from mauto.errors import MautoError, UsageError, printable
from mauto.gitref import WORKING_TREE, project_at
from mauto.graph import action_label, trigger_label
from mauto.store.sqlite import Store
from mauto.templates import TEXT_PART, TemplateSet
from mauto.workflow.loader import load
from mauto.workflow.model import Step, Workflow, build, content_hash
from mauto.workflow.schema import validate

DEPLOYED = "deployed"  # the side that is what the store runs
TEXT_DIFF_LINES = 30  # of a template's diff in the terminal (Markdown and JSON have it whole)
FOLDED_DIFF_LINES = 15  # longer template diffs are folded in Markdown (<details>)
FOLDED_STEPS = 12  # a new or removed workflow with more steps is listed folded in Markdown
_BLOCK_KEYS = ("then", "else", "on_event", "on_timeout")
# Where contacts rest between ticks: on a time (a wait, a send put off by quiet hours or a cap), an event, or a
# value from outside (a coupon code, a webhook's answer). The positions `in_flight` policies act on.
_RESTING = ("wait", "wait_for", "email", "sms", "webhook", "assign_coupon")


class Detail(NamedTuple):
    """One thing that changed: what, and its text before and after (None: absent on that side)."""

    what: str
    before: str | None
    after: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "before": self.before, "after": self.after}


@dataclass
class StepChange:
    """A step added, removed, moved or changed. `step` is how the log names it (its id, or its place such as
    `6.on_timeout.1`): the head's, the base's for a removed step."""

    change: str  # added | removed | moved | changed
    step: str
    action: str  # what it does (`wait 48h`, `email cart/reminder-2`), as in the head (the base for a removed one)
    details: list[Detail] = field(default_factory=list)
    moved: tuple[str, str] | None = None  # (place in the base, place in the head)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"change": self.change, "step": self.step, "action": self.action,
                                "details": [detail.to_dict() for detail in self.details]}
        if self.moved:
            data["moved"] = {"from": self.moved[0], "to": self.moved[1]}
        return data


@dataclass
class InFlight:
    """What a deploy does to the contacts inside the workflow: its policy, in sentences; `counted` when the
    sentences are the store's (`mauto plan`), with how many contacts wait where."""

    policy: str
    lines: list[str]
    counted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "lines": self.lines, "counted": self.counted}


@dataclass
class WorkflowDiff:
    id: str
    change: str  # added | removed | changed
    file: str | None  # the head's file (the base's for a removed workflow), relative to the project folder
    version: int | None = None
    old_version: int | None = None
    old_file: str | None = None  # when the file moved
    properties: list[Detail] = field(default_factory=list)  # trigger, audience, reentry, goal, settings ...
    steps: list[StepChange] = field(default_factory=list)
    in_flight: InFlight | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "change": self.change, "file": self.file, "version": self.version,
                "old_version": self.old_version, "old_file": self.old_file,
                "properties": [detail.to_dict() for detail in self.properties],
                "steps": [step.to_dict() for step in self.steps],
                "in_flight": self.in_flight.to_dict() if self.in_flight else None, "notes": self.notes}


@dataclass
class TemplateDiff:
    path: str  # templates/cart/reminder-2.email.html
    change: str  # added | removed | changed
    lines: list[str]  # the unified diff's hunks (`@@ … @@`, ` `, `-`, `+` lines); empty for a file that is not text
    used_by: list[tuple[str, str]] = field(default_factory=list)  # (workflow, step) that send it, on either side

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "change": self.change, "diff": self.lines,
                "used_by": [{"workflow": workflow, "step": step} for workflow, step in self.used_by]}


@dataclass
class Diff:
    base: str  # how the sides are named: `HEAD`, `main`, `deployed`, `working tree`
    head: str
    workflows: list[WorkflowDiff] = field(default_factory=list)
    unchanged: int = 0
    templates: list[TemplateDiff] = field(default_factory=list)
    settings: list[Detail] = field(default_factory=list)  # mauto.yaml
    problems: list[str] = field(default_factory=list)  # files one side could not read
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.workflows or self.templates or self.settings or self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "head": self.head, "workflows": [item.to_dict() for item in self.workflows],
                "unchanged": self.unchanged, "templates": [item.to_dict() for item in self.templates],
                "settings": [detail.to_dict() for detail in self.settings], "problems": self.problems,
                "notes": self.notes}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


# --- reading one side ------------------------------------------------------------------------------------------


@dataclass
class Side:
    """One side's workflows (by id), their files, the files it could not read, its template texts and settings."""

    project: Project
    workflows: dict[str, Workflow] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    templates: dict[str, str | None] = field(default_factory=dict)  # templates/… -> text (None: not UTF-8 text)

    @property
    def settings(self) -> dict[str, Any]:
        return self.project.data


def _relative(project: Project, path: Path) -> str:
    try:
        return path.resolve().relative_to(project.root.resolve()).as_posix()
    except ValueError:
        return str(path)


def read_side(project: Project) -> Side:
    """The workflows that load and pass the schema (by id; the first file wins a duplicate id), with a line for
    each file that does not; and every file under templates/."""
    from mauto.lint.runner import workflow_files

    side = Side(project)
    for path in workflow_files(project.workflows_dir):
        shown = _relative(project, path)
        try:
            document = load(path, shown)
            problems = validate(document, "workflow") if document.data is not None else []
        except MautoError as error:
            side.problems.append(str(error))
            continue
        if document.data is None or problems:
            where = f"{shown}:{problems[0].pos.line}:{problems[0].pos.col}: {problems[0].message}" if problems \
                else f"{shown}: the file is empty"
            side.problems.append(where)
            continue
        workflow = build(document)
        if workflow.id in side.workflows:
            side.problems.append(f"{shown}: id `{workflow.id}` is also the id of {side.files[workflow.id]}")
            continue
        side.workflows[workflow.id] = workflow
        side.files[workflow.id] = shown
    folder = project.templates_dir
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = "templates/" + path.relative_to(folder).as_posix()
                try:
                    side.templates[name] = path.read_bytes().decode("utf-8")
                except UnicodeDecodeError:
                    side.templates[name] = None
    return side


# --- matching steps --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Node:
    """A step with its place: its parent step (None at the top), the block it is in, its index there."""

    step: Step
    parent: _Node | None
    block: str | None
    index: int
    order: int  # in document order, nested steps included


def _nodes(workflow: Workflow) -> tuple[list[_Node], dict[tuple[_Node | None, str | None], list[_Node]]]:
    """Every step as a node, in document order, and each block's nodes by (parent, block name)."""
    nodes: list[_Node] = []
    blocks: dict[tuple[_Node | None, str | None], list[_Node]] = {}

    def walk(steps: list[Step], parent: _Node | None, block: str | None) -> None:
        members = blocks.setdefault((parent, block), [])
        for index, step in enumerate(steps):
            node = _Node(step, parent, block, index, len(nodes))
            nodes.append(node)
            members.append(node)
            for name, children in step.blocks.items():
                walk(children, node, name)

    walk(workflow.steps, None, None)
    return nodes, blocks


def identity(step: Step) -> str | None:
    """What names a step whatever its place: its id, else a split's own id."""
    if step.id:
        return "id:" + step.id
    if step.kind == "split" and isinstance(step.value, dict) and isinstance(step.value.get("id"), str):
        return "split:" + step.value["id"]
    return None


def own(step: Step) -> dict[str, Any]:
    """The step as written, without the steps nested in it (those are compared one by one)."""
    item = {key: value for key, value in step.raw.items() if not key.startswith("_") and key not in _BLOCK_KEYS}
    split = item.get("split")
    if step.kind == "split" and isinstance(split, dict) and isinstance(split.get("variants"), dict):
        item["split"] = {**split, "variants": {
            name: {key: value for key, value in spec.items() if key != "steps"} if isinstance(spec, dict) else spec
            for name, spec in split["variants"].items()}}
    return item


def place(step: Step) -> str:
    """A step's place, 1-based, whatever its id: `5`, `6.on_timeout.1.then.1`, `2.question.1`."""
    return step.place


def name(step: Step) -> str:
    """How the step log names a step: its id, or its place."""
    return step.id or place(step)


def _signature(step: Step) -> str:
    return json.dumps([step.kind, own(step)], sort_keys=True, ensure_ascii=False, default=str)


def _increasing(values: list[int]) -> set[int]:
    """The positions of a longest increasing subsequence of `values`."""
    if not values:
        return set()
    best: list[list[int]] = []
    for index, value in enumerate(values):
        chains = [chain for chain in best if values[chain[-1]] < value]
        chain = max(chains, key=len) if chains else []
        best.append([*chain, index])
    longest: list[int] = max(best, key=len)
    return set(longest)


class Matching:
    """The steps of two versions of a workflow, paired (see the module's docstring)."""

    def __init__(self, base: Workflow, head: Workflow) -> None:
        self.base_nodes, self.base_blocks = _nodes(base)
        self.head_nodes, self.head_blocks = _nodes(head)
        self.pairs: dict[_Node, _Node] = {}  # base -> head
        self.back: dict[_Node, _Node] = {}  # head -> base
        named: dict[str, _Node] = {}
        for node in self.head_nodes:
            ident = identity(node.step)
            if ident is not None:
                named.setdefault(ident, node)
        for node in self.base_nodes:
            ident = identity(node.step)
            other = named.get(ident) if ident is not None else None
            if other is not None and other not in self.back:
                self._link(node, other)
        pending: list[tuple[_Node | None, _Node | None]] = [(None, None), *self.pairs.items()]
        while pending:
            base_parent, head_parent = pending.pop(0)
            if base_parent is None or head_parent is None:
                names: list[str | None] = [None]
            else:
                names = [block for block in base_parent.step.blocks if block in head_parent.step.blocks]
            for block in names:
                pending += self._align(self.base_blocks.get((base_parent, block), []),
                                       self.head_blocks.get((head_parent, block), []))

    def _link(self, base: _Node, head: _Node) -> None:
        self.pairs[base] = head
        self.back[head] = base

    def _align(self, base: list[_Node], head: list[_Node]) -> list[tuple[_Node, _Node]]:
        """Pair the steps of one block on both sides; the new pairs (their blocks are aligned next)."""
        heads, bases = set(head), set(base)

        def token(node: _Node, other: _Node | None, here: set[_Node], side: str) -> str:
            if other is None:
                return _signature(node.step)
            if other in here:  # paired by id within this very block: an anchor
                return f"pair:{(node if side == 'base' else other).order}"
            return f"elsewhere:{side}:{node.order}"

        base_tokens = [token(node, self.pairs.get(node), heads, "base") for node in base]
        head_tokens = [token(node, self.back.get(node), bases, "head") for node in head]
        made: list[tuple[_Node, _Node]] = []
        matcher = difflib.SequenceMatcher(None, base_tokens, head_tokens, autojunk=False)
        for operation, base_from, base_to, head_from, head_to in matcher.get_opcodes():
            if operation == "equal":
                for offset in range(base_to - base_from):
                    left, right = base[base_from + offset], head[head_from + offset]
                    if left not in self.pairs and right not in self.back:
                        self._link(left, right)
                        made.append((left, right))
            elif operation == "replace":
                made += self._pair_by_kind([node for node in base[base_from:base_to] if node not in self.pairs],
                                           [node for node in head[head_from:head_to] if node not in self.back])
        # A step that crossed an anchor (`wait 1d` now above `hello`) is left out of the alignment: the same
        # step still in the block is that step, moved.
        unpaired = [node for node in head if node not in self.back]
        for node in base:
            if node in self.pairs:
                continue
            same = next((other for other in unpaired if _signature(other.step) == _signature(node.step)), None)
            if same is not None:
                unpaired.remove(same)
                self._link(node, same)
                made.append((node, same))
        return made

    def _pair_by_kind(self, base: list[_Node], head: list[_Node]) -> list[tuple[_Node, _Node]]:
        """In a changed stretch, each base step pairs with the next head step of its kind, in order; two steps
        with different ids never pair (that is a step removed and another added)."""
        made = []
        start = 0
        for left in base:
            for position in range(start, len(head)):
                right = head[position]
                both_named = identity(left.step) is not None and identity(right.step) is not None
                if right.step.kind == left.step.kind and not both_named:
                    self._link(left, right)
                    made.append((left, right))
                    start = position + 1
                    break
        return made

    def moved(self) -> set[_Node]:
        """The base nodes whose pair is in another block, or out of order among the pairs of its block."""
        found = set()
        in_block: dict[tuple[_Node | None, str | None], list[_Node]] = {}
        for left, right in self.pairs.items():
            parent = self.pairs.get(left.parent) if left.parent is not None else None
            if parent is not right.parent or left.block != right.block:
                found.add(left)
            else:
                in_block.setdefault((left.parent, left.block), []).append(left)
        for members in in_block.values():
            members.sort(key=lambda node: node.index)
            kept = _increasing([self.pairs[node].index for node in members])
            found.update(node for position, node in enumerate(members) if position not in kept)
        return found

    def changes(self) -> list[StepChange]:
        """Every step added, removed, moved or changed, in the head's order (a removed step after the step that
        came before it)."""
        moved = self.moved()
        ordered: list[tuple[tuple[int, int, int], StepChange]] = []
        for node in self.head_nodes:
            left = self.back.get(node)
            if left is None:
                ordered.append(((node.order, 0, 0), StepChange("added", name(node.step), action_label(node.step))))
                continue
            details = step_details(left.step, node.step)
            if left in moved:
                ordered.append(((node.order, 0, 0), StepChange("moved", name(node.step), action_label(node.step),
                                                               details, (place(left.step), place(node.step)))))
            elif details:
                ordered.append(((node.order, 0, 0), StepChange("changed", name(node.step), action_label(node.step),
                                                               details)))
        anchor = -1
        for node in self.base_nodes:
            right = self.pairs.get(node)
            if right is not None:
                anchor = right.order
                continue
            ordered.append(((anchor, 1, node.order), StepChange("removed", name(node.step), action_label(node.step))))
        ordered.sort(key=lambda item: item[0])
        return [change for _, change in ordered]

    def names(self) -> dict[str, str]:
        """How the head names each base step that has a pair: base name -> head name (for the step log)."""
        return {name(left.step): name(right.step) for left, right in self.pairs.items()}


# --- describing a change ---------------------------------------------------------------------------------------


def show(value: Any) -> str:
    """A value as one line of text: strings as written, the rest as JSON."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return printable(" ".join(text.split()))


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        found: dict[str, Any] = {}
        for key, item in value.items():
            found.update(_leaves(item, f"{prefix}.{key}" if prefix else str(key)))
        return found
    return {prefix: value}


_ABSENT = object()


def leaf_details(before: Any, after: Any, prefix: str) -> list[Detail]:
    """Each leaf (dotted key) whose value differs; `_ABSENT` on a side: nothing there."""
    old = _leaves(before, prefix) if before is not _ABSENT else {}
    new = _leaves(after, prefix) if after is not _ABSENT else {}
    details = []
    for key in [*old, *(key for key in new if key not in old)]:
        left, right = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if left != right:
            details.append(Detail(key, None if left is _ABSENT else show(left),
                                  None if right is _ABSENT else show(right)))
    return details


def _weights(split: Any) -> str:
    variants = split.get("variants") if isinstance(split, dict) else None
    if not isinstance(variants, dict):
        return ""
    return " / ".join(f"{variant} {spec.get('weight')}%" if isinstance(spec, dict) else variant
                      for variant, spec in variants.items())


def step_details(base: Step, head: Step) -> list[Detail]:
    """What changed in a step itself (not in the steps nested in it): `wait: 24h → 48h`, `condition: … → …`,
    `weights: a 50% / b 50% → a 70% / b 30%`, `template: … → …`, `vars.subject_line: … → …`."""
    if base.kind != head.kind:
        return [Detail("action", action_label(base), action_label(head))]
    before, after = own(base), own(head)
    if before == after:
        return []
    kind = base.kind
    old, new = before.get(kind), after.get(kind)
    details: list[Detail] = []
    if kind == "split":
        if _weights(old) != _weights(new):
            details.append(Detail("weights", _weights(old), _weights(new)))
        old_rest, new_rest = ({key: value for key, value in split.items() if key != "variants"}
                              if isinstance(split, dict) else split for split in (old, new))
        details += leaf_details(old_rest, new_rest, "split")
    elif old != new:
        label = {"if": "condition", "email": "template", "sms": "template"}.get(kind, kind)
        if isinstance(old, dict) and isinstance(new, dict):
            details += leaf_details(old, new, kind)
        else:
            details.append(Detail(label, show(old), show(new)))
    for key in [*before, *(key for key in after if key not in before)]:
        if key != kind and before.get(key, _ABSENT) != after.get(key, _ABSENT):
            details += leaf_details(before.get(key, _ABSENT), after.get(key, _ABSENT), key)
    return details


def _exit_on(data: dict[str, Any]) -> str | None:
    items = data.get("exit_on")
    if not items:
        return None
    return ", ".join(item if isinstance(item, str) else
                     f"{item.get('event')}" + (f" where {item['where']}" if item.get("where") else "")
                     for item in items)


def workflow_details(base: Workflow, head: Workflow) -> list[Detail]:
    """The workflow's own changes: trigger, audience, exit_on, then every other key (goal, reentry, settings,
    in_flight, name, …) leaf by leaf."""
    before, after = base.document.data, head.document.data
    details = []
    if before.get("trigger") != after.get("trigger"):
        old, new = trigger_label(base), trigger_label(head)
        if old == new:
            old, new = show(before.get("trigger")), show(after.get("trigger"))
        details.append(Detail("trigger", old, new))
    if before.get("audience") != after.get("audience"):
        details.append(Detail("audience", None if base.audience is None else show(base.audience.source),
                              None if head.audience is None else show(head.audience.source)))
    if before.get("exit_on") != after.get("exit_on"):
        details.append(Detail("exit_on", _exit_on(before), _exit_on(after)))
    skipped = ("id", "version", "steps", "trigger", "audience", "exit_on")
    for key in [*before, *(key for key in after if key not in before)]:
        if key not in skipped and before.get(key, _ABSENT) != after.get(key, _ABSENT):
            details += leaf_details(before.get(key, _ABSENT), after.get(key, _ABSENT), key)
    return details


def _quoted(names: list[str]) -> str:
    return ", ".join(f"`{item}`" for item in names)


def in_flight(base: Workflow, head: Workflow) -> InFlight:
    """What deploying `head` over `base` does to the contacts inside, from the files alone: the head's policy,
    and under `migrate`, which of the places where contacts wait keep their id (they move) and which do not
    (they finish on the old version: migrate moves by step id)."""
    policy, old, new = head.in_flight, base.version, head.version
    if policy == "stop":
        return InFlight(policy, [f"contacts inside v{old} leave at deploy"])
    if policy != "migrate":
        return InFlight(policy, [f"contacts inside v{old} finish on v{old}"])
    ids = {step.id for step in head.iter_steps() if step.id}
    moving, gone, unnamed = [], [], []
    for step in base.iter_steps():
        if step.kind not in _RESTING:
            continue
        if not step.id:
            unnamed.append(place(step))
        elif step.id in ids:
            moving.append(step.id)
        else:
            gone.append(step.id)
    lines = []
    if moving:
        lines.append(f"waiting at {_quoted(moving)}: move to v{new}")
    if gone:
        lines.append(f"waiting at {_quoted(gone)} (removed in v{new}): finish on v{old}")
    if unnamed:
        lines.append(f"waiting at {_quoted(unnamed)} of v{old} (no id: migrate moves by id): finish on v{old}")
    return InFlight(policy, lines or [f"no step of v{old} where contacts wait"])


# --- templates -------------------------------------------------------------------------------------------------


def template_uses(side: Side) -> dict[str, list[tuple[str, str]]]:
    """Each template file (`templates/…`) -> the (workflow, step) whose sends use it: the template itself, an
    email's text part, and every layout or partial they extend or include."""
    templates = TemplateSet(side.project.templates_dir, side.project.root)
    uses: dict[str, list[tuple[str, str]]] = {}
    for workflow in side.workflows.values():
        for step in workflow.iter_steps():
            if step.kind not in ("email", "sms") or not isinstance(step.value, str):
                continue
            names = [templates.file_name(step.kind, step.value)]
            if step.kind == "email":
                names.append(step.value + TEXT_PART)
            for file_name in names:
                for info in templates.lineage(file_name):
                    users = uses.setdefault("templates/" + info.name, [])
                    if (workflow.id, name(step)) not in users:
                        users.append((workflow.id, name(step)))
    return uses


def template_changes(base: Side, head: Side) -> list[TemplateDiff]:
    """Every file under templates/ added, removed or changed, with its unified diff and the steps that send it
    (on either side: a step that stopped using it is still told)."""
    uses_before, uses_after = template_uses(base), template_uses(head)
    found = []
    for path in sorted(set(base.templates) | set(head.templates)):
        old, new = base.templates.get(path, ""), head.templates.get(path, "")
        in_base, in_head = path in base.templates, path in head.templates
        if in_base and in_head and old == new:
            continue
        change = "added" if not in_base else "removed" if not in_head else "changed"
        lines: list[str] = []
        if old is not None and new is not None:
            lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=2))[2:]
        users = list(uses_after.get(path, []))
        users += [user for user in uses_before.get(path, []) if user not in users]
        found.append(TemplateDiff(path, change, [printable(line, keep_tab=True) for line in lines], users))
    return found


# --- the diff --------------------------------------------------------------------------------------------------


def _changed(workflow_id: str, before: Workflow, after: Workflow, base: Side, head: Side) -> WorkflowDiff:
    item = WorkflowDiff(workflow_id, "changed", head.files.get(workflow_id), after.version, before.version)
    if base.files.get(workflow_id) not in (None, item.file):
        item.old_file = base.files.get(workflow_id)
    item.properties = workflow_details(before, after)
    item.steps = Matching(before, after).changes()
    if after.version == before.version:
        item.notes.append(f"the content changed but `version` is still {after.version}: `mauto deploy` refuses it "
                          "until the version is bumped")
    elif after.version < before.version:
        item.notes.append(f"`version` went down ({before.version} → {after.version}): `mauto deploy` refuses it")
    elif not item.properties and not item.steps:
        item.notes.append("only the version changed")
    item.in_flight = in_flight(before, after)
    return item


def _whole(workflow: Workflow, change: str, file: str | None) -> WorkflowDiff:
    """A workflow that is only on one side: its trigger and every step, as added or removed."""
    item = WorkflowDiff(workflow.id, change, file, workflow.version if change == "added" else None,
                        workflow.version if change == "removed" else None)
    item.properties = [Detail("trigger", None, trigger_label(workflow)) if change == "added"
                       else Detail("trigger", trigger_label(workflow), None)]
    if workflow.audience is not None:
        text = show(workflow.audience.source)
        item.properties.append(Detail("audience", None, text) if change == "added" else Detail("audience", text, None))
    item.steps = [StepChange(change, name(step), action_label(step)) for step in workflow.iter_steps()]
    if change == "removed":
        item.in_flight = InFlight("finish", [f"contacts inside v{workflow.version} finish on v{workflow.version}; "
                                             "no new contacts enter"])
    return item


def _plan_in_flight(item: WorkflowDiff, plans: dict[str, Any]) -> None:
    """The store's numbers, as `mauto plan` says them, in place of the sentences made from the files."""
    change = plans.get(item.id)
    if change is None:
        return
    if change.kind == "refused":
        item.notes.append(f"mauto plan refuses it: {change.reason}")
    elif change.kind in ("changed", "removed"):
        item.in_flight = InFlight(change.policy, [change.sentence()], counted=True)


def diff(base: Project, head: Project, store: Store | None = None, labels: tuple[str, str] = ("base", "head")) -> Diff:
    """What changes from `base` to `head`, workflow by workflow, then the templates and mauto.yaml.

    With `store` (the base is what the store runs), each changed or removed workflow's `in_flight` is the one
    `mauto plan` gives: how many contacts wait at which step, and whether they move, finish or stop."""
    before, after = read_side(base), read_side(head)
    result = Diff(*labels)
    result.problems = [f"{labels[0]}: {line}" for line in before.problems]
    result.problems += [f"{labels[1]}: {line}" for line in after.problems]
    for workflow_id in sorted(set(before.workflows) | set(after.workflows)):
        old, new = before.workflows.get(workflow_id), after.workflows.get(workflow_id)
        if old is None and new is not None:
            result.workflows.append(_whole(new, "added", after.files[workflow_id]))
        elif new is None and old is not None:
            result.workflows.append(_whole(old, "removed", before.files[workflow_id]))
        elif old is not None and new is not None:
            if content_hash(old.document.data) == content_hash(new.document.data):
                result.unchanged += 1
            else:
                result.workflows.append(_changed(workflow_id, old, new, before, after))
    if store is not None:
        from mauto.deploy import plan

        plans = {change.id: change for change in plan(head, store).changes}
        for item in result.workflows:
            _plan_in_flight(item, plans)
    result.templates = template_changes(before, after)
    result.settings = leaf_details(before.settings, after.settings, "")
    return result


# --- the sides: a git ref, the working tree, what the store runs -----------------------------------------------


@contextmanager
def deployed_project(project: Project, store: Store) -> Iterator[tuple[Project, list[str]]]:
    """What the store runs, as a project in a temporary folder (read-only, removed after the block): each
    workflow's current version (removed ones left out), and the current release's mauto.yaml and templates;
    with notes on what had to come from the files on disk (a store with no release yet)."""
    from mauto import release
    from mauto.gitref import make_read_only, make_writable
    from mauto.store import releases, runtime

    notes: list[str] = []
    with store.guard():
        current = releases.current_release(store.db)
        files = release.files_of(store.db, current["id"]) if current is not None else {}
        sources = {workflow: runtime.workflow_source(store.db, workflow, version)
                   for workflow, (version, state) in sorted(releases.workflows(store.db).items())
                   if state != "removed"}
    if current is None:
        notes.append("the store has no release yet (deployed before schema version 8): its templates and "
                     "mauto.yaml are taken as they are on disk")
        files = release.project_files(project)
    with tempfile.TemporaryDirectory(prefix="mauto-deployed-") as temporary:
        root = Path(temporary) / "project"
        for relative, text in files.items():
            target = root / (project.path.name if relative == "mauto.yaml" else relative)
            if not relative.startswith("templates/") and relative != "mauto.yaml" or \
                    not target.resolve().is_relative_to(root.resolve()):
                continue  # workflows.json, and no path out of the folder whatever the store says
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        (root / "workflows").mkdir(parents=True, exist_ok=True)
        for workflow, source in sources.items():
            if source is None:
                notes.append(f"`{workflow}`: the store keeps no source for its current version")
                continue
            (root / "workflows" / f"{workflow}.yaml").write_text(source, encoding="utf-8")
        make_read_only(root)
        try:
            yield load_project(root / project.path.name, display_root=root), notes
        finally:
            make_writable(root)


@contextmanager
def open_side(project: Project, spec: str | None, store: Store | None = None) -> Iterator[tuple[Project, list[str]]]:
    """One side of a comparison: None is the working tree, `deployed` what the store runs, anything else a git
    ref. Yields the project and notes about it."""
    if spec == DEPLOYED:
        if store is None:  # pragma: no cover - diff_refs opens the store whenever a side is `deployed`
            raise UsageError("`deployed` needs the project's store")
        with deployed_project(project, store) as opened:
            yield opened
        return
    with project_at(project, spec) as at:
        yield at, []


def diff_refs(project: Project, base: str = "HEAD", head: str | None = None,
              open_store: Callable[[], Store] | None = None) -> Diff:
    """`mauto diff [BASE] [HEAD]`: BASE a git ref (default `HEAD`, the last commit) or `deployed` (what the
    store runs); HEAD a git ref, or None for the working tree as it is. `open_store` opens the project's store;
    it is called only when a side is `deployed`."""
    with ExitStack() as stack:
        store = None
        if DEPLOYED in (base, head):
            if open_store is None:
                raise UsageError("`deployed` needs the project's store")
            store = stack.enter_context(open_store())
        base_project, base_notes = stack.enter_context(open_side(project, base, store))
        head_project, head_notes = stack.enter_context(open_side(project, head, store))
        result = diff(base_project, head_project, store if base == DEPLOYED else None,
                      (base, head or WORKING_TREE))
        result.notes = base_notes + [note for note in head_notes if note not in base_notes]
        for item in result.workflows:  # the store keeps no file names: the ones on that side were made up
            item.old_file = None if DEPLOYED in (base, head) else item.old_file
            on_deployed_side = base if item.change == "removed" else head
            item.file = None if on_deployed_side == DEPLOYED else item.file
        return result


# --- text ------------------------------------------------------------------------------------------------------

_MARKS = {"added": "+", "removed": "-", "changed": "~", "moved": "~"}
_STYLES = {"added": "green", "removed": "red", "changed": "yellow", "moved": "cyan"}


def _arrow(detail: Detail) -> str:
    if detail.before is None:
        return f"{detail.what}: {detail.after} (new)"
    if detail.after is None:
        return f"{detail.what}: {detail.before} (gone)"
    return f"{detail.what}: {detail.before} → {detail.after}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def summary(result: Diff) -> str:
    """`HEAD → working tree: 2 workflows changed, 11 unchanged; 1 template changed`."""
    kinds = [item.change for item in result.workflows]
    parts = [f"{kinds.count(kind)} {kind}" for kind in ("added", "changed", "removed") if kinds.count(kind)]
    if parts:
        first = kinds.count(next(kind for kind in ("added", "changed", "removed") if kinds.count(kind)))
        number, kind = parts[0].split(" ")
        parts[0] = f"{number} workflow{'' if first == 1 else 's'} {kind}"
        workflows = ", ".join(parts) + f", {result.unchanged} unchanged"
    else:
        workflows = f"no workflow changed ({result.unchanged} unchanged)"
    line = f"{result.base} → {result.head}: {workflows}"
    if result.templates:
        line += f"; {_count(len(result.templates), 'template')} changed"
    if result.settings:
        line += "; mauto.yaml changed"
    return line


def _workflow_text(item: WorkflowDiff) -> Text:
    versions = {"added": f"v{item.version}", "removed": f"v{item.old_version}",
                "changed": f"v{item.old_version} → v{item.version}"}[item.change]
    where = printable(item.file or "")
    if item.old_file:
        where = printable(f"{item.old_file} → {item.file}")
    head = Text(f"{_MARKS[item.change]} {item.id} {versions}", style=f"bold {_STYLES[item.change]}")
    head.append(f"  {where}" if where else "")
    if item.change != "changed":
        head.append(f"  ({item.change})")
    lines = [head]
    for detail in item.properties:
        lines.append(Text(f"    {_arrow(detail)}"))
    width = max((len(step.step) for step in item.steps), default=0)
    for step in item.steps:
        line = Text(f"    {_MARKS[step.change]} {step.step.ljust(width)}  ", style=_STYLES[step.change])
        line.append(printable(step.action))
        if step.moved:
            line.append(f"  moved from {step.moved[0]} to {step.moved[1]}", style="cyan")
        lines.append(line)
        for detail in step.details:
            lines.append(Text(f"        {_arrow(detail)}", style="dim"))
    for note in item.notes:
        lines.append(Text(f"    ! {note}", style="red"))
    if item.in_flight is not None:
        counted = "" if item.in_flight.counted else "; from the files, `mauto diff deployed` counts the contacts"
        lines.append(Text(f"    in flight (in_flight: {item.in_flight.policy}{counted})", style="bold"))
        lines += [Text(f"      {line}") for line in item.in_flight.lines]
    return Text("\n").join(lines)


def _users(users: list[tuple[str, str]]) -> str:
    return ", ".join(f"{workflow} {step}" for workflow, step in users) or "no step"


def _template_text(item: TemplateDiff) -> Text:
    head = Text(f"{_MARKS[item.change]} {printable(item.path)}", style=f"bold {_STYLES[item.change]}")
    head.append(f"  ({item.change}) used by {_users(item.used_by)}")
    lines = [head]
    if not item.lines and item.change == "changed":
        lines.append(Text("    (not text: no diff)", style="dim"))
    for line in item.lines[:TEXT_DIFF_LINES]:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else \
            "cyan" if line.startswith("@@") else ""
        lines.append(Text("    " + line, style=style))
    if len(item.lines) > TEXT_DIFF_LINES:
        lines.append(Text(f"    … {len(item.lines) - TEXT_DIFF_LINES} more lines (--format markdown or json "
                          "shows them all)", style="dim"))
    return Text("\n").join(lines)


def text_blocks(result: Diff) -> list[Text]:
    """The diff for a terminal: a summary line, then one block per workflow, per template, and mauto.yaml."""
    blocks = [Text(summary(result), style="bold")]
    blocks += [Text(f"note: {note}", style="dim") for note in result.notes]
    blocks += [Text(f"! {problem}", style="red") for problem in result.problems]
    blocks += [_workflow_text(item) for item in result.workflows]
    blocks += [_template_text(item) for item in result.templates]
    if result.settings:
        lines = [Text("~ mauto.yaml", style="bold yellow")]
        lines += [Text(f"    {_arrow(detail)}") for detail in result.settings]
        blocks.append(Text("\n").join(lines))
    return blocks


# --- Markdown --------------------------------------------------------------------------------------------------


def code(text: str) -> str:
    """`text` as a Markdown code span, whatever backticks it holds (one line: line breaks become spaces)."""
    text = printable(" ".join(text.split()))
    if not text:
        return "` `"
    run = longest = 0
    for character in text:
        run = run + 1 if character == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") or longest else text
    return f"{fence}{padded}{fence}"


def fenced(lines: list[str], language: str = "") -> list[str]:
    """A fenced code block that no line of `lines` can close: its fence is longer than any run of backticks in
    them."""
    longest = 2
    for line in lines:
        run = 0
        for character in line:
            run = run + 1 if character == "`" else 0
            longest = max(longest, run)
    fence = "`" * (longest + 1)
    return [f"{fence}{language}", *lines, fence]


def _md_detail(detail: Detail) -> str:
    if detail.before is None:
        return f"{code(detail.what)}: {code(detail.after or '')} (new)"
    if detail.after is None:
        return f"{code(detail.what)}: {code(detail.before)} (gone)"
    return f"{code(detail.what)}: {code(detail.before)} → {code(detail.after)}"


def _md_step(step: StepChange) -> list[str]:
    line = f"- **{step.change}** {code(step.step)} {code(step.action)}"
    if step.moved:
        line += f": from {code(step.moved[0])} to {code(step.moved[1])}"
    return [line, *(f"  - {_md_detail(detail)}" for detail in step.details)]


def _md_workflow(item: WorkflowDiff) -> list[str]:
    versions = {"added": f"v{item.version} (new)", "removed": f"v{item.old_version} (removed)",
                "changed": f"v{item.old_version} → v{item.version}"}[item.change]
    lines = [f"### {_MARKS[item.change]} {code(item.id)} {versions}", ""]
    if item.file:
        lines += [f"{code(item.old_file)} → {code(item.file)}" if item.old_file else code(item.file), ""]
    lines += [f"> **Warning**: {note}" for note in item.notes]
    if item.notes:
        lines.append("")
    if item.properties:
        lines += [f"- {_md_detail(detail)}" for detail in item.properties] + [""]
    steps = [line for step in item.steps for line in _md_step(step)]
    if steps and item.change != "changed" and len(item.steps) > FOLDED_STEPS:
        lines += [f"<details><summary>{len(item.steps)} steps</summary>", "", *steps, "", "</details>", ""]
    elif steps:
        lines += [*steps, ""]
    if item.in_flight is not None:
        source = "" if item.in_flight.counted else "; from the files, `mauto diff deployed` counts the contacts"
        lines.append(f"**In flight** ({code('in_flight: ' + item.in_flight.policy)}{source}):")
        lines += [""] + [f"- {line}" for line in item.in_flight.lines] + [""]
    return lines


def _md_template(item: TemplateDiff) -> list[str]:
    users = ", ".join(f"{code(workflow)} › {code(step)}" for workflow, step in item.used_by) or "no step"
    lines = [f"#### {_MARKS[item.change]} {code(item.path)} ({item.change})", "", f"Used by {users}.", ""]
    if not item.lines:
        return lines + (["Not text: no diff.", ""] if item.change == "changed" else [])
    block = fenced(item.lines, "diff")
    if len(item.lines) > FOLDED_DIFF_LINES:
        summary_line = f"<details><summary>{len(item.lines)} lines of diff</summary>"
        return lines + [summary_line, "", *block, "", "</details>", ""]
    return lines + [*block, ""]


def markdown(result: Diff, heading: str = "##") -> str:
    """The diff as Markdown for a pull-request comment: a heading per workflow, bullet lists, the template diffs
    fenced (folded in <details> when long)."""
    lines = [f"{heading} mauto diff: {code(result.base)} → {code(result.head)}", "", summary(result) + ".", ""]
    lines += [f"> {note}" for note in result.notes] + ([""] if result.notes else [])
    lines += [f"- :warning: {code(problem)}" for problem in result.problems] + ([""] if result.problems else [])
    for item in result.workflows:
        lines += _md_workflow(item)
    if result.templates:
        lines += ["### Templates", ""]
        for template in result.templates:
            lines += _md_template(template)
    if result.settings:
        lines += ["### `mauto.yaml`", ""] + [f"- {_md_detail(detail)}" for detail in result.settings] + [""]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"
