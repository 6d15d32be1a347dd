"""Expressions (`where`, `audience`, `if`, segments): Jinja2 expressions in a sandbox.

An expression is parsed once into Jinja2's AST. The lint walks that tree to
find the names, functions, fields and events it uses; the engine compiles the
same tree into a callable.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property, lru_cache
from typing import Any, Callable
from zoneinfo import ZoneInfo

from jinja2 import BaseLoader, StrictUndefined, TemplateSyntaxError, nodes, pass_context
from jinja2.environment import TemplateExpression
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

from mauto.workflow.loader import Pos

NAMES = ("contact", "event", "vars", "now")
FUNCTIONS = {
    "has_event": ("name", "within", "since", "where"),
    "event_count": ("name", "within", "since", "where"),
    "days_since": ("datetime",),
    "in_list": ("name",),
    "duration": ("text",),
}
TEMPLATE_NAMES = NAMES + ("unsubscribe_url",)


@pass_context
def date_filter(context: Any, value: Any, format: str = "%Y-%m-%d") -> str:
    """Format a date or datetime; an aware datetime is shown in the contact's zone."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime) and value.tzinfo is not None:
        zone = context.get("_zone")
        if isinstance(zone, str):
            try:
                value = value.astimezone(ZoneInfo(zone))
            except (KeyError, ValueError):
                pass
    if isinstance(value, (date, datetime)):
        return value.strftime(format)
    return str(value)


def sandbox(loader: BaseLoader | None = None, autoescape: Any = False) -> SandboxedEnvironment:
    """The one Jinja2 environment shape mauto uses: sandboxed, strict, no globals but ours."""
    # auto_reload off: a run never sees a template change under it, and checking costs a stat per render
    environment = SandboxedEnvironment(loader=loader, autoescape=autoescape, undefined=StrictUndefined,
                                       keep_trailing_newline=True, auto_reload=False)
    environment.globals.clear()
    environment.filters["date"] = date_filter
    return environment


_ENVIRONMENT = sandbox()


class ExpressionError(ValueError):
    """An expression that does not parse; `offset` is where in its source, when known."""

    def __init__(self, message: str, offset: int = -1) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Use:
    """Something an expression uses.

    kind: name (a bare name), call (a function), contact / event / vars (an
    attribute of that name), filter, test, event-name (a literal event name
    given to has_event/event_count), duration (a literal duration given to
    `within=` or `duration()`), argument (a keyword argument of a function),
    nested (a `where=` string: `detail` is the event name it filters, or None),
    step (a literal compared with `event.step`).
    """

    kind: str
    name: str
    offset: int = -1
    detail: Any = None


class Expression:
    """An expression as written in a file, with its place; parsed on first use, then kept."""

    __slots__ = ("source", "path", "pos", "__dict__")

    def __init__(self, source: str, path: str = "<expression>", pos: Pos = Pos(1, 1)) -> None:
        self.source = source
        self.path = path
        self.pos = pos

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    @cached_property
    def tree(self) -> nodes.Expr:
        """The parsed expression; raises ExpressionError."""
        return _parsed(self.source)[0]

    @cached_property
    def uses(self) -> list[Use]:
        return _parsed(self.source)[1]

    @cached_property
    def evaluator(self) -> Callable[..., Any]:
        """A callable taking the names in scope as keyword arguments and returning the value."""
        body = [nodes.Assign(nodes.Name("result", "store"), self.tree, lineno=1)]
        template = _ENVIRONMENT.from_string(nodes.Template(body, lineno=1))
        return TemplateExpression(template, undefined_to_none=False)

    def evaluate(self, **names: Any) -> Any:
        return self.evaluator(**names)


@lru_cache(maxsize=8192)
def _parsed(source: str) -> tuple[nodes.Expr, list[Use]]:
    """Parse and analyse once per distinct source: offsets are relative to the source, so sites share them.

    An ExpressionError is not cached; it is raised again for each site.
    """
    tree = parse(source)
    return tree, analyse(tree, source)


def parse(source: str) -> nodes.Expr:
    """Parse an expression (no `{{ }}`) into Jinja2's AST."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("the expression is empty")
    if "{{" in source or "{%" in source:
        raise ExpressionError("write the expression without `{{ }}` or `{% %}`", source.find("{"))
    try:
        parser = Parser(_ENVIRONMENT, source, state="variable")
        tree = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            raise ExpressionError(f"unexpected `{token.value}` after the end of the expression",
                                  _end_of_expression(source))
    except TemplateSyntaxError as error:
        raise ExpressionError(_syntax_message(error.message or "invalid syntax")) from None
    tree.set_environment(_ENVIRONMENT)
    return tree


def _syntax_message(message: str) -> str:
    if "'end of template'" in message or "'end of print statement'" in message:
        return "invalid expression: it ends too early (a missing operand or closing bracket?)"
    return f"invalid expression: {message}"


_STRING = re.compile(r"""(['"])((?:\\.|(?!\1).)*)\1""")


def mask_strings(source: str) -> str:
    """`source` with the inside of every string literal blanked, so a search for a name skips strings."""
    return _STRING.sub(lambda match: match.group(1) + " " * len(match.group(2)) + match.group(1), source)


def _end_of_expression(source: str) -> int:
    """Where the first complete expression of `source` ends: the offset of what follows it.

    Jinja2's tokens carry a line number but no column, so this finds the longest
    prefix that parses as a whole expression (on the error path only).
    """
    for end in range(min(len(source), 500), 0, -1):
        if not source[end - 1].isspace() and (end == len(source) or not (
                source[end - 1].isalnum() and source[end].isalnum())):
            try:
                parser = Parser(_ENVIRONMENT, source[:end], state="variable")
                parser.parse_expression()
                if parser.stream.eos:
                    rest = source[end:]
                    return end + (len(rest) - len(rest.lstrip()))
            except TemplateSyntaxError:
                continue
    return -1


def _find(source: str, pattern: str, start: int = 0) -> int:
    match = re.search(pattern, source[start:])
    return match.start() + start if match else -1


RECORDS = ("contact", "event", "vars")


def record_attribute(node: nodes.Node) -> tuple[str, str] | None:
    """("contact", "first_name") for `contact.first_name` or `contact['first_name']`; None for anything else."""
    target = getattr(node, "node", None)
    if not (isinstance(target, nodes.Name) and target.name in RECORDS):
        return None
    if isinstance(node, nodes.Getattr):
        return target.name, node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return target.name, node.arg.value
    return None


def _nodes(tree: nodes.Node, types: Any):
    """`tree` itself and every node under it of these types (Jinja2's find_all skips the root)."""
    if isinstance(tree, types):
        yield tree
    yield from tree.find_all(types)


def analyse(tree: nodes.Node, source: str) -> list[Use]:
    """Everything the expression uses, each with its offset in `source` (best effort)."""
    raw = source
    source = mask_strings(source)
    uses: list[Use] = []
    called: set[int] = set()
    attributed: set[int] = set()
    for call in _nodes(tree, nodes.Call):
        if isinstance(call.node, nodes.Name):
            called.add(id(call.node))
            name = call.node.name
            offset = _find(source, rf"\b{re.escape(name)}\s*\(")
            uses.append(Use("call", name, offset))
            uses.extend(_call_arguments(name, call, raw, offset))
    for node in _nodes(tree, (nodes.Getattr, nodes.Getitem)):
        found = record_attribute(node)
        if found is None:
            continue
        record, attribute = found
        attributed.add(id(node.node))
        pattern = rf"\b{record}\s*(?:\.\s*{re.escape(attribute)}\b|\[\s*['\"]{re.escape(attribute)}['\"])"
        match = re.search(pattern, raw if isinstance(node, nodes.Getitem) else source)
        offset = match.start() + match.group(0).rfind(attribute) if match else -1
        uses.append(Use(record, attribute, offset))
    for name in _nodes(tree, nodes.Name):
        if name.ctx == "load" and id(name) not in called:
            uses.append(Use("name", name.name, _find(source, rf"(?<![\w.]){re.escape(name.name)}\b")))
    for node in _nodes(tree, nodes.Filter):
        uses.append(Use("filter", node.name, _find(source, rf"\|\s*{re.escape(node.name)}\b")))
    for node in _nodes(tree, nodes.Test):
        uses.append(Use("test", node.name, _find(source, rf"\bis\s+(?:not\s+)?{re.escape(node.name)}\b")))
    for compare in _nodes(tree, nodes.Compare):
        uses.extend(_step_references(compare, raw))
    return uses


def _call_arguments(name: str, call: nodes.Call, source: str, offset: int) -> list[Use]:
    uses: list[Use] = []
    event_name = None
    if name in ("has_event", "event_count") and call.args and isinstance(call.args[0], nodes.Const):
        event_name = call.args[0].value
        if isinstance(event_name, str):
            uses.append(Use("event-name", event_name, _find(source, re.escape(repr(event_name)[1:-1]), max(offset, 0))))
    if name == "duration" and call.args and isinstance(call.args[0], nodes.Const):
        uses.append(Use("duration", str(call.args[0].value), offset))
    allowed = FUNCTIONS.get(name)
    if allowed is not None and len(call.args) > len(allowed):
        uses.append(Use("argument", f"{len(call.args)} positional", offset, detail=name))
    for keyword in call.kwargs:
        if allowed is not None and keyword.key not in allowed[1:]:
            uses.append(Use("argument", keyword.key, _find(source, rf"\b{keyword.key}\s*=", max(offset, 0)), name))
        if not isinstance(keyword.value, nodes.Const):
            continue
        value = keyword.value.value
        keyword_offset = _find(source, rf"\b{keyword.key}\s*=", max(offset, 0))
        if keyword.key == "within" and isinstance(value, str):
            uses.append(Use("duration", value, keyword_offset))
        elif keyword.key == "where" and isinstance(value, str):
            uses.append(Use("nested", value, keyword_offset, detail=event_name))
        elif keyword.key == "since" and isinstance(value, str):  # 'entry', or a mistake
            uses.append(Use("since", value, keyword_offset))
    return uses


def _is_event_step(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Getattr) and node.attr == "step" and isinstance(node.node, nodes.Name) \
        and node.node.name == "event"


def _step_references(compare: nodes.Compare, source: str) -> list[Use]:
    operands = [compare.expr] + [operand.expr for operand in compare.ops]
    if not any(_is_event_step(operand) for operand in operands):
        return []
    uses = []
    for operand in operands:
        values: list[Any] = []
        if isinstance(operand, nodes.Const):
            values = [operand.value]
        elif isinstance(operand, (nodes.List, nodes.Tuple)):
            values = [item.value for item in operand.items if isinstance(item, nodes.Const)]
        for value in values:
            if isinstance(value, str):
                uses.append(Use("step", value, _find(source, rf"['\"]{re.escape(value)}['\"]")))
    return uses
