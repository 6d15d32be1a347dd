"""Draw a workflow: a Mermaid flowchart (GitHub renders it in Markdown) or a Graphviz dot graph.

Both drawings come from one neutral graph (`flow`): a node for the trigger,
the audience, a note with `exit_on` and `goal`, every step, and the end;
edges that follow execution. Nested blocks rejoin the step after their
parent unless they end in `exit`, which leads to the end node.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mauto.errors import MautoError, UsageError, YamlError
from mauto.workflow.durations import parse_duration
from mauto.workflow.loader import load
from mauto.workflow.model import Step, Workflow, build
from mauto.workflow.schema import validate

# Node roles; each format gives each role its own shape.
TRIGGER, AUDIENCE, NOTE, WAIT, DECISION, ACTION, START, END = (
    "trigger", "audience", "note", "wait", "decision", "action", "start", "end")
MINUS = "\u2212"  # a real minus sign: `lists +vip −prospects` reads better than a hyphen
TITLE_LENGTH = 60  # task titles are whole sentences of template code: keep their start


@dataclass(frozen=True)
class Node:
    id: str
    role: str
    label: str


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""
    dotted: bool = False  # the note's link to the trigger: not a path contacts take


@dataclass(frozen=True)
class Flow:
    """A workflow as nodes and edges, both in document order."""

    name: str
    nodes: list[Node]
    edges: list[Edge]


# --- labels -----------------------------------------------------------------

def _text(value: Any) -> str:
    """One line of text: YAML block scalars and templates may span lines."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif value is None:
        value = "null"
    elif not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return " ".join(value.split())


def _shorten(text: str, length: int) -> str:
    return text if len(text) <= length else text[:length - 1].rstrip() + "…"


def trigger_label(workflow: Workflow) -> str:
    """`event: cart_abandoned where …`, `date: birthday at 09:00`, `schedule: 0 9 * * MON`, …"""
    trigger = workflow.trigger
    value = trigger.value
    if trigger.kind == "date":
        label = f"date: {_text(value['field'])}"
        offset = value.get("offset")
        if offset and parse_duration(offset, signed=True):  # `0d` is the date itself
            label += f" {offset[1:]} before" if offset.startswith("-") else f" {offset} after"
        every = value.get("every", "year")
        if every != "year":
            label += " once" if every == "once" else f" every {every}"
        return label + f" at {value.get('at', '09:00')}"
    if trigger.kind == "schedule":
        zone = value.get("timezone")
        return f"schedule: {_text(value['cron'])}" + (f" ({zone})" if zone else "")
    if trigger.kind == "inactivity":
        label = f"inactivity: {value['event']} for {value['for']}"
        return label + (f" where {_text(value['where'])}" if value.get("where") else "")
    label = f"{trigger.kind}: {_text(value)}"  # event, segment
    return label + (f" where {_text(trigger.where.source)}" if trigger.where is not None else "")


def note_label(workflow: Workflow) -> str | None:
    """`exits on order_placed; goal order_placed within 7d`, or None when there is neither."""
    parts = []
    if workflow.exit_on:
        events = [name + (f" where {_text(where.source)}" if where is not None else "")
                  for name, where in workflow.exit_on]
        parts.append("exits on " + ", ".join(events))
    goal = workflow.goal
    if goal:
        text = f"goal {goal['event']}"
        if goal.get("where"):
            text += f" where {_text(goal['where'])}"
        if goal.get("within"):
            text += f" within {goal['within']}"
        if goal.get("exit") is False:
            text += " (counted, no exit)"
        parts.append(text)
    return "; ".join(parts) or None


def _signed(number: int) -> str:
    return f"+{number}" if number >= 0 else f"{MINUS}{-number}"


def action_label(step: Step) -> str:
    """What a step does, in a few words: `wait 1h`, `email cart/reminder-1`, `split (a 50% / b 50%)`, …"""
    kind, value = step.kind, step.value
    if kind == "wait":
        if isinstance(value, str):
            return f"wait {value}"
        days = value.get("days")
        return f"wait until {_text(value['until'])}" + (f" ({', '.join(days)})" if days else "")
    if kind == "wait_for":
        where = f" where {_text(value['where'])}" if value.get("where") else ""
        return f"wait_for {value['event']}{where} (timeout {value['timeout']})"
    if kind in ("email", "sms", "start", "exit"):
        return f"{kind} {_text(value)}"
    if kind == "if":
        return f"if {_text(value)}"
    if kind == "split":
        weights = " / ".join(f"{name} {spec['weight']}%" for name, spec in value["variants"].items())
        return f"split ({weights})"
    if kind == "score":
        return f"score {_signed(value)}"
    if kind == "lists":
        moves = [f"+{name}" for name in value.get("add", [])] + [f"{MINUS}{name}" for name in value.get("remove", [])]
        return "lists " + " ".join(_text(move) for move in moves)
    if kind == "update":
        changes = [f"{field} = {_text(new)}" for field, new in value.get("set", {}).items()]
        changes += [f"{field} unset" for field in value.get("unset", [])]
        tags = [f"+{tag}" for tag in value.get("add_tags", [])]
        tags += [f"{MINUS}{tag}" for tag in value.get("remove_tags", [])]
        if tags:
            changes.append("tags " + " ".join(tags))
        return "update " + _text(", ".join(changes))
    if kind == "task":
        label = f"task {_shorten(_text(value['title']), TITLE_LENGTH)}"
        if value.get("assignee"):
            label += f" → {_shorten(_text(value['assignee']), TITLE_LENGTH)}"
        return label + (f", due {value['due']}" if value.get("due") else "")
    if kind == "webhook":
        label = f"webhook {value.get('method', 'POST')} {_text(value['url'])}"
        return label + (f" → vars.{value['as']}" if value.get("as") else "")
    if kind == "assign_coupon":
        return f"assign_coupon {_text(value['pool'])} → vars.{value['as']}"
    raise ValueError(f"no label for a `{kind}` step")  # pragma: no cover - the schema knows every action


def step_label(step: Step) -> str:
    """The step's id when it has one (a split's own id otherwise), then what it does."""
    name = step.id
    if name is None and step.kind == "split":
        name = step.value.get("id")
    action = action_label(step)
    return f"{name}: {action}" if name else action


_ROLES = {"wait": WAIT, "wait_for": WAIT, "if": DECISION, "split": DECISION, "start": START}


# --- the graph --------------------------------------------------------------

def flow(workflow: Workflow) -> Flow:
    """The workflow as nodes (ids n0, n1, … in document order) and edges that follow execution."""
    nodes: list[Node] = []
    edges: list[Edge] = []

    def add(role: str, label: str) -> str:
        node_id = f"n{len(nodes)}"
        nodes.append(Node(node_id, role, label))
        return node_id

    trigger = add(TRIGGER, trigger_label(workflow))
    entry = trigger
    if workflow.audience is not None:
        audience = add(AUDIENCE, f"audience: {_text(workflow.audience.source)}")
        edges.append(Edge(trigger, audience))
        entry = audience
    note = note_label(workflow)
    if note:
        edges.append(Edge(trigger, add(NOTE, note), dotted=True))
    # Steps are keyed by their JSON path: unique in a file, and Step itself is not hashable.
    ids = {step.path: add(_ROLES.get(step.kind, ACTION), step_label(step)) for step in workflow.all_steps}
    end = add(END, "end")

    def first(block: list[Step], after: str) -> str:
        return ids[block[0].path] if block else after

    def walk(block: list[Step], after: str) -> None:
        """Edges out of every step of `block`, which continues to `after` when it does not exit."""
        for index, step in enumerate(block):
            here = ids[step.path]
            following = ids[block[index + 1].path] if index + 1 < len(block) else after
            if step.kind == "exit":
                edges.append(Edge(here, end, _text(step.value)))
            elif step.kind == "if":
                edges.append(Edge(here, first(step.blocks["then"], following), "yes"))
                edges.append(Edge(here, first(step.blocks.get("else", []), following), "no"))
            elif step.kind == "wait_for":
                edges.append(Edge(here, first(step.blocks.get("on_event", []), following), step.value["event"]))
                edges.append(Edge(here, first(step.blocks.get("on_timeout", []), following),
                                  f"after {step.value['timeout']}"))
            elif step.kind == "split":
                for variant, spec in step.value["variants"].items():
                    edges.append(Edge(here, first(step.blocks[variant], following), f"{variant} {spec['weight']}%"))
            else:
                edges.append(Edge(here, following))
            for child in step.blocks.values():
                walk(child, following)

    edges.append(Edge(entry, first(workflow.steps, end)))
    walk(workflow.steps, end)
    return Flow(workflow.id, nodes, edges)


# --- Mermaid ----------------------------------------------------------------

# Mermaid reads `#name;` as an entity: write every character that could end a label or
# be taken for markup (GitHub renders labels as HTML) as one. `#` too, so a `#quot;`
# written in an expression stays text, and `\`, or `\n` would become a line break.
_MERMAID_ESCAPES = str.maketrans({
    "#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "{": "#123;", "}": "#125;",
    "&": "#amp;", "`": "#96;", "|": "#124;", "\\": "#92;",
})
# Before parsing, Mermaid drops the last `;` of any line matching `style.*:\S*#.*;` (or the
# same with `classDef`), which would cut our last entity short: no `:` on such a line.
_STYLE_LINE = re.compile(r"style|classDef")
_MERMAID_SHAPES = {
    TRIGGER: ('("', '")'), END: ('("', '")'), AUDIENCE: ('{{"', '"}}'), NOTE: ('>"', '"]'),
    WAIT: ('(["', '"])'), DECISION: ('{"', '"}'), ACTION: ('["', '"]'), START: ('[["', '"]]'),
}


def mermaid_text(text: str) -> str:
    """A label's text as Mermaid reads it inside `"…"`."""
    escaped = text.translate(_MERMAID_ESCAPES)
    return escaped.replace(":", "#58;") if _STYLE_LINE.search(escaped) else escaped


def to_mermaid(workflow: Workflow) -> str:
    """A Mermaid `flowchart TD` of the workflow, ready for a ```mermaid block in Markdown."""
    graph = flow(workflow)
    lines = ["flowchart TD"]
    for node in graph.nodes:
        opening, closing = _MERMAID_SHAPES[node.role]
        lines.append(f"    {node.id}{opening}{mermaid_text(node.label)}{closing}")
    for edge in graph.edges:
        arrow = "-.-" if edge.dotted else "-->"
        label = f'|"{mermaid_text(edge.label)}"|' if edge.label else ""
        lines.append(f"    {edge.source} {arrow}{label} {edge.target}")
    return "\n".join(lines) + "\n"


# --- Graphviz dot -----------------------------------------------------------

_DOT_SHAPES = {
    TRIGGER: "shape=ellipse", END: "shape=ellipse", AUDIENCE: "shape=hexagon", NOTE: "shape=note",
    WAIT: "shape=box, style=rounded", DECISION: "shape=diamond", ACTION: "shape=box",
    START: "shape=box, peripheries=2",
}


def dot_string(text: str) -> str:
    """A dot double-quoted string: backslashes and quotes escaped (a lone `\\n` would become a line break)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(workflow: Workflow) -> str:
    """A Graphviz `digraph` of the workflow (`dot -Tsvg` draws it)."""
    graph = flow(workflow)
    lines = [f"digraph {dot_string(graph.name)} {{", "    node [shape=box];"]
    for node in graph.nodes:
        lines.append(f"    {node.id} [label={dot_string(node.label)}, {_DOT_SHAPES[node.role]}];")
    for edge in graph.edges:
        attributes = []
        if edge.label:
            attributes.append(f"label={dot_string(edge.label)}")
        if edge.dotted:
            attributes.append("style=dashed, arrowhead=none")
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"    {edge.source} -> {edge.target}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[Workflow], str]] = {"mermaid": to_mermaid, "dot": to_dot}


# --- finding and loading the workflow to draw --------------------------------

_WORKFLOW_ID = re.compile(r"[a-z0-9][a-z0-9-]*")
_SUFFIXES = (".yaml", ".yml")


def locate(reference: Path, project: Callable[[], Any]) -> tuple[Path, str]:
    """The file `reference` names, and how to show its path.

    An existing file, or anything shaped like a path, is itself; a bare workflow
    id is looked up in the project's `workflows/` folder (`project` is called
    only then, so drawing a file needs no project).
    """
    text = str(reference)
    if reference.is_file() or not _WORKFLOW_ID.fullmatch(text):
        return reference, text
    found = project()
    folder: Path = found.workflows_dir
    candidates = [folder / f"{text}{suffix}" for suffix in _SUFFIXES]
    candidates += sorted(path for path in folder.rglob("*") if path.suffix in _SUFFIXES) if folder.is_dir() else []
    matches: list[Path] = []
    for path in dict.fromkeys(candidates):  # the file named after the id first, then every other one
        if not path.is_file():
            continue
        try:
            data = load(path).data
        except YamlError:
            continue  # a broken file is lint's business; it is not the one asked for unless named so
        if isinstance(data, dict) and data.get("id") == text:
            matches.append(path)
            if path in candidates[:len(_SUFFIXES)]:
                break
    if not matches:
        raise UsageError(f"{text}: no such file, and no workflow with id `{text}` in {found.display(folder)}")
    if len(matches) > 1:
        raise UsageError(f"{text}: several workflows have this id: "
                         + ", ".join(found.display(path) for path in matches))
    return matches[0], found.display(matches[0])


def load_workflow(path: Path, display: str | None = None) -> Workflow:
    """Load, validate and build one workflow file; the first schema problem raises at its line and column."""
    shown = display or str(path)
    document = load(path, shown)
    if document.data is None:
        raise YamlError("the file is empty", shown, 1, 1)
    problems = validate(document, "workflow")
    if problems:
        problem = problems[0]
        more = f" (and {len(problems) - 1} more; `mauto lint` lists them)" if len(problems) > 1 else ""
        raise MautoError(problem.message + more, shown, problem.pos.line, problem.pos.col)
    return build(document)
