"""Audiences in SQL: a `--where`, segment or audience expression as a condition on the `contacts` table.

`compile_where` turns an expression into two SQL conditions on the contacts row `c`:

- `condition`: the contact matches (the Python evaluator would say true);
- `doubt`: the SQL cannot be sure what the Python evaluator would say for this contact (a value of a type
  the comparison would raise on, a date stored in an odd form, a field that is not there): the caller then
  evaluates that one contact in Python, which gives its answer or its error, exactly as before.

So the answer is the Python evaluator's for every contact, whatever the store holds; `doubt` is false for
the usual data, and the common expressions cost one indexed or scanning query. An expression outside what
compiles (see docs/store.md, "Audiences in SQL") gives None: the caller evaluates every contact in Python.

The SQL is SQLite's; what PostgreSQL spells otherwise (JSON access, casts, parameters, text order) is in
`SPELLINGS`, one entry per dialect.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from jinja2 import nodes
from jinja2.environment import TemplateExpression

from mauto.engine.records import BUILTIN_DEFAULTS  # what ContactState.record gives a field not set

__all__ = ["SPELLINGS", "SQL_DIALECTS", "Compiled", "Spelling", "compile_where", "date_trigger_candidates"]


# --- what differs between dialects -------------------------------------------------------------------------

@dataclass(frozen=True)
class Spelling:
    """How one dialect writes the few things SQL dialects disagree on. `{doc}` is a JSON text column,
    `{key}` a parameter holding the field's name (SQLite: its JSON path), `{value}` an SQL value."""

    parameter: str  # a named parameter
    key: Callable[[str], str]  # a field name as the JSON accessors take it (bound as a parameter)
    kind: str  # the JSON type of a member, as the dialect names it; NULL when absent
    kinds: dict[str, tuple[str, ...]]  # number, text, array, object, null: the dialect's names of each
    number: str  # the member as an SQL number (JSON true and false as 1 and 0, as Python's True == 1)
    text: str  # the member as SQL text, ordered by code point
    has_text: str  # the JSON array member holds a text item equal to {value}
    has_number: str  # the JSON array member holds a number (or true/false, as 1/0) equal to {value}
    nonempty_array: str
    contains: str  # the SQL text {value} contains the text {part}
    canonical_stamp: str  # {value} is a time as the store writes it (mauto.store.sqlite.stamp), years 1000-8999
    canonical_date: str  # {value} is a valid YYYY-MM-DD date, years 1000-8999


SPELLINGS: dict[str, Spelling] = {
    "sqlite": Spelling(
        parameter=":{}",
        key=lambda name: '$."' + name + '"',
        kind="json_type({doc}, {key})",
        kinds={"number": ("integer", "real", "true", "false"), "text": ("text",), "array": ("array",),
               "object": ("object",), "null": ("null",)},
        number="json_extract({doc}, {key})",
        text="json_extract({doc}, {key})",
        has_text="EXISTS (SELECT 1 FROM json_each({doc}, {key}) AS item WHERE item.type = 'text' "
                 "AND item.atom = {value})",
        has_number="EXISTS (SELECT 1 FROM json_each({doc}, {key}) AS item WHERE item.type IN "
                   "('integer', 'real', 'true', 'false') AND item.atom = {value})",
        nonempty_array="json_array_length({doc}, {key}) > 0",
        contains="instr({value}, {part}) > 0",
        canonical_stamp="({value} GLOB '[1-8][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]"
                        ".[0-9][0-9][0-9][0-9][0-9][0-9]+00:00' AND datetime(substr({value}, 1, 19)) = "
                        "replace(substr({value}, 1, 19), 'T', ' '))",
        canonical_date="({value} GLOB '[1-8][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]' AND date({value}) = {value})",
    ),
    # Untested here: the lead's PostgreSQL store runs it (contacts.fields and events.properties as text).
    "postgresql": Spelling(
        parameter="%({})s",
        key=lambda name: name,
        kind="jsonb_typeof(({doc})::jsonb -> {key})",
        kinds={"number": ("number", "boolean"), "text": ("string",), "array": ("array",), "object": ("object",),
               "null": ("null",)},
        number="CASE jsonb_typeof(({doc})::jsonb -> {key}) WHEN 'boolean' THEN "
               "(CASE WHEN (({doc})::jsonb -> {key}) = 'true'::jsonb THEN 1 ELSE 0 END)::numeric "
               "ELSE (({doc})::jsonb ->> {key})::numeric END",
        text="((({doc})::jsonb ->> {key}) COLLATE \"C\")",
        has_text="EXISTS (SELECT 1 FROM jsonb_array_elements(({doc})::jsonb -> {key}) AS item(value) WHERE "
                 "jsonb_typeof(item.value) = 'string' AND (item.value #>> '{{}}') = {value})",
        has_number="EXISTS (SELECT 1 FROM jsonb_array_elements(({doc})::jsonb -> {key}) AS item(value) WHERE "
                   "CASE jsonb_typeof(item.value) WHEN 'number' THEN (item.value #>> '{{}}')::numeric "
                   "WHEN 'boolean' THEN (CASE WHEN item.value = 'true'::jsonb THEN 1 ELSE 0 END) END = {value})",
        nonempty_array="jsonb_array_length(({doc})::jsonb -> {key}) > 0",
        contains="strpos({value}, {part}) > 0",
        canonical_stamp="({value} ~ '^[1-8][0-9]{{3}}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]"
                        "\\.[0-9]{{6}}\\+00:00$' AND to_char(to_timestamp(substr({value}, 1, 19), "
                        "'YYYY-MM-DD\"T\"HH24:MI:SS'), 'YYYY-MM-DD\"T\"HH24:MI:SS') = substr({value}, 1, 19))",
        canonical_date="({value} ~ '^[1-8][0-9]{{3}}-[01][0-9]-[0-3][0-9]$' AND "
                       "to_char(to_date({value}, 'YYYY-MM-DD'), 'YYYY-MM-DD') = {value})",
    ),
}


SQL_DIALECTS = ("sqlite",)  # the stores whose queries use these spellings (PostgreSQL's: once tested there)


# --- the result --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Compiled:
    """An expression as SQL on the contacts row `c`: `condition` (true: the contact matches, unless in
    doubt), `doubt` (true: only the Python evaluator can tell), with their named `parameters`.
    `where` is what a query keeps: `condition OR doubt`."""

    condition: str
    doubt: str
    parameters: dict[str, Any]
    dialect: str = "sqlite"
    events: bool = False  # reads the events table

    @property
    def where(self) -> str:
        if self.doubt == _FALSE:
            return self.condition
        return f"({self.condition}) OR ({self.doubt})"

    def select(self, columns: str = "c.*", order: str = "c.id") -> str:
        """The query of the contacts (not erased) it keeps, with `doubt` as the last column `mauto_doubt`."""
        return (f"SELECT {columns}, {self.doubt} AS mauto_doubt FROM contacts AS c "
                f"WHERE c.erased_at IS NULL AND ({self.where}) ORDER BY {order}")


class _NotCompiled(Exception):
    """A part of the expression the SQL does not cover: the whole goes to the Python evaluator."""


_TRUE, _FALSE = "TRUE", "FALSE"
_ERROR = object()  # an outcome: Python raises (or may): the contact is in doubt

# The classes a value may be of, as the evaluator sees it: what comparisons do depends only on these.
NONE, UNDEFINED, NUMBER, TEXT, DATE_TEXT, STAMP_TEXT, ARRAY, OBJECT, COUNT = (
    "none", "undefined", "number", "text", "date-text", "stamp-text", "array", "object", "count")
_LARGEST_EXACT = 2**53  # numbers past it: SQLite may hold a stored integer as a real
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


@dataclass
class _Const:
    value: Any


@dataclass
class _Value:
    """A value read from the row: `cases`, exclusive and covering every row, each (SQL predicate, class);
    `sql`: the value itself (for the number, text and count classes); `json`: (document, key parameter) of a
    JSON member, for array tests; `doubt`: computing it may fail."""

    cases: list[tuple[Any, Any]]  # (str or _Is, class)
    sql: str = ""
    text_sql: str = ""
    json: tuple[str, str] | None = None
    doubt: str = _FALSE


@dataclass
class _Context:
    spelling: Spelling
    fields: dict[str, Any]
    now: datetime
    zone: str
    parameters: dict[str, Any] = field(default_factory=dict)
    events: bool = False
    processed_only: bool = False

    def bind(self, value: Any) -> str:
        name = f"a{len(self.parameters)}"
        self.parameters[name] = value
        return self.spelling.parameter.format(name)


# --- boolean algebra on SQL text, never NULL ----------------------------------------------------------------

def _and(*parts: str) -> str:
    if _FALSE in parts:
        return _FALSE
    kept = [part for part in parts if part != _TRUE]
    if not kept:
        return _TRUE
    return kept[0] if len(kept) == 1 else "(" + " AND ".join(kept) + ")"


def _or(*parts: str) -> str:
    if _TRUE in parts:
        return _TRUE
    kept = list(dict.fromkeys(part for part in parts if part != _FALSE))
    if not kept:
        return _FALSE
    return kept[0] if len(kept) == 1 else "(" + " OR ".join(kept) + ")"


def _not(part: str) -> str:
    return {_TRUE: _FALSE, _FALSE: _TRUE}.get(part, f"(NOT {part})")


Truth = tuple[str, str]  # (true, in doubt)


# --- the entry point ---------------------------------------------------------------------------------------

def compile_where(expression: Any, fields: dict[str, Any], zone: str, now: datetime,
                  dialect: str = "sqlite", *, processed_events_only: bool = False) -> Compiled | None:
    """The expression (its source, an Expression, or a contacts.Where) as SQL on the contacts row `c`, or None
    when it uses what the SQL does not cover (the caller then evaluates every contact in Python). `fields`:
    the declared contact fields with their types (Project.contact_fields); `now`: the moment `now` and
    `within=` count from (aware); `zone`: the project's time zone (days_since of a date);
    `processed_events_only`: count only the events a tick has handled, as the daemon's contacts hold them
    (runtime.load_contact), for a segment's check in the daemon."""
    from mauto.workflow.expressions import Expression, ExpressionError

    if not isinstance(expression, (str, Expression)):
        expression = expression.expression  # a contacts.Where
    if isinstance(expression, str):
        expression = Expression(expression)
    if now.tzinfo is None:
        return None
    context = _Context(SPELLINGS[dialect], fields, now, zone, processed_only=processed_events_only)
    try:
        condition, doubt = _truth(expression.tree, context, None)
    except (_NotCompiled, ExpressionError):
        return None
    return Compiled(condition, doubt, context.parameters, dialect, context.events)


# --- nodes -------------------------------------------------------------------------------------------------

_EVENT_FUNCTIONS = frozenset({"has_event", "event_count", "in_list"})


def _is_constant(node: nodes.Node) -> bool:
    """Whether `node` has one value for every contact (it reads no record and calls no function of one)."""
    for name in (node, *node.find_all(nodes.Name)):
        if isinstance(name, nodes.Name) and name.name in ("contact", "event", "vars", *_EVENT_FUNCTIONS):
            return False
    return not any(isinstance(call.node, nodes.Name) and call.node.name in _EVENT_FUNCTIONS
                   for call in node.find_all(nodes.Call))


def _constant(node: nodes.Node, context: _Context) -> Any:
    """The value of a constant part, computed as the evaluator computes it; _NotCompiled when it fails."""
    if isinstance(node, nodes.Const):
        value = node.value
    else:
        from mauto.workflow.durations import parse_duration
        from mauto.workflow.expressions import _ENVIRONMENT

        template = _ENVIRONMENT.from_string(nodes.Template([nodes.Assign(nodes.Name("result", "store"), node,
                                                                         lineno=1)], lineno=1))
        # the names Scope.names gives that read no contact (days_since: Python, through the fallback)
        names = {"now": context.now, "duration": parse_duration, "_zone": context.zone}
        try:
            value = TemplateExpression(template, undefined_to_none=False)(**names)
        except Exception:  # noqa: BLE001 - Python's evaluator raises it for each contact: let it
            raise _NotCompiled from None
    if type(value) in (list, tuple):
        if not all(_plain(item) for item in value):
            raise _NotCompiled
    elif not _plain(value) and not (type(value) is datetime and value.tzinfo is not None):
        raise _NotCompiled
    return value


def _plain(value: Any) -> bool:
    if type(value) is float:
        return math.isfinite(value) and abs(value) <= _LARGEST_EXACT
    if type(value) is int:
        return abs(value) <= _LARGEST_EXACT
    return type(value) in (str, bool, type(None))


def _truth(node: nodes.Node, context: _Context, event: str | None) -> Truth:
    """(true, in doubt) of `node` taken as a condition (Python's truth of its value)."""
    if isinstance(node, nodes.And):
        left, left_doubt = _truth(node.left, context, event)
        right, right_doubt = _truth(node.right, context, event)
        return _and(left, right), _or(left_doubt, _and(left, right_doubt))
    if isinstance(node, nodes.Or):
        left, left_doubt = _truth(node.left, context, event)
        right, right_doubt = _truth(node.right, context, event)
        return _or(left, right), _or(left_doubt, _and(_not(left), right_doubt))
    if isinstance(node, nodes.Not):
        inner, doubt = _truth(node.node, context, event)
        return _not(inner), doubt
    if isinstance(node, nodes.Compare):
        return _comparisons(node, context, event)
    if isinstance(node, nodes.Test):
        return _test(node, context, event)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "has_event" \
            and event is None:
        return _has_event(node, context)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "in_list" \
            and event is None:
        return _in_list(node, context)
    value = _operand(node, context, event)
    if isinstance(value, _Const):
        return (_TRUE if value.value else _FALSE), _FALSE
    return _over_cases(value, lambda kind: _truthy(kind, value, context))


def _over_cases(value: _Value, outcome: Callable[[Any], Any]) -> Truth:
    """(true, in doubt) from each case's outcome: True, False, _ERROR or an SQL condition."""
    true: list[Any] = []
    doubt: list[Any] = [value.doubt]
    for predicate, kind in value.cases:
        result = outcome(kind)
        if result is _ERROR:
            doubt.append(predicate)
        elif isinstance(result, _Checked):
            doubt.append(_and(str(predicate), _not(result.sure)))
            true.append(_and(str(predicate), result.sure, result.true))
        elif result is True:
            true.append(predicate)
        elif result is not False:
            true.append(_and(str(predicate), result))
    return _or(*_merged(true)), _or(*_merged(doubt))


def _truthy(kind: Any, value: _Value, context: _Context) -> Any:
    if isinstance(kind, _Const):
        return bool(kind.value)
    if kind == NONE:
        return False
    if kind in (NUMBER, COUNT):
        return f"{value.sql} <> 0"
    if kind in (TEXT, DATE_TEXT, STAMP_TEXT):
        return f"{value.text_sql} <> ''"  # a date read as one is never empty, nor a stamp
    if kind == ARRAY and value.json is not None:
        return context.spelling.nonempty_array.format(doc=value.json[0], key=value.json[1])
    return _ERROR  # an Undefined, an object


# --- reading a field ---------------------------------------------------------------------------------------

def _operand(node: nodes.Node, context: _Context, event: str | None) -> _Const | _Value:
    from mauto.workflow.expressions import record_attribute

    if _is_constant(node):
        return _Const(_constant(node, context))
    found = record_attribute(node)
    if found is not None and found[0] == "contact" and event is None:
        return _contact_field(found[1], context)
    if found is not None and found[0] == "event" and event is not None:
        return _event_field(found[1], context, event)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "event_count" \
            and event is None:
        return _event_count(node, context)
    raise _NotCompiled


def _json_value(doc: str, name: str, context: _Context, absent: list[tuple[str, Any]],
                text_kind: str) -> _Value:
    """A member of a JSON column: `absent` are the cases for a member that is not there or null."""
    spelling = context.spelling
    key = context.bind(spelling.key(name))
    kind = _kind(doc, key, context)
    cases: list[tuple[Any, Any]] = [
        *absent, (_is(kind, ("number",), context), NUMBER), (_is(kind, ("text",), context), text_kind),
        (_is(kind, ("array",), context), ARRAY), (_is(kind, ("object",), context), OBJECT)]
    return _Value(cases, spelling.number.format(doc=doc, key=key), spelling.text.format(doc=doc, key=key),
                  (doc, key))


def _kind(doc: str, key: str, context: _Context) -> str:
    """The JSON type of a member, never NULL: `absent` when it is not there."""
    return f"coalesce({context.spelling.kind.format(doc=doc, key=key)}, 'absent')"


@dataclass(frozen=True)
class _Is:
    """A case's predicate `kind IN names` (the dialect's type names), merged with its neighbours'."""

    kind: str
    names: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.kind} IN ({', '.join(repr(name) for name in self.names)})"


def _is(kind: str, classes: tuple[str, ...], context: _Context) -> _Is:
    names = tuple(name for group in classes
                  for name in (context.spelling.kinds.get(group) or (group,)))
    return _Is(kind, names)


def _merged(predicates: list[Any]) -> list[str]:
    """The predicates, those on one kind expression merged into one IN."""
    merged: dict[str, list[str]] = {}
    others: list[str] = []
    for predicate in predicates:
        if isinstance(predicate, _Is):
            merged.setdefault(predicate.kind, []).extend(predicate.names)
        else:
            others.append(predicate)
    return [*others, *(str(_Is(kind, tuple(names))) for kind, names in merged.items())]


def _contact_field(name: str, context: _Context) -> _Value:
    """`contact.<name>` as ContactState.record gives it: every declared field (None when unset), the
    built-in defaults, the stored values, dates and datetimes read as such (typed_fields)."""
    declared = context.fields.get(name, _UNDECLARED)
    if name == "id":
        return _Value([(_TRUE, TEXT)], "c.id", "c.id")
    if name in ("email", "phone"):
        return _Value([(f"c.{name} IS NULL", NONE), (f"c.{name} IS NOT NULL", TEXT)], f"c.{name}", f"c.{name}")
    if name in ("email_consent", "sms_consent"):
        return _Value([(_TRUE, NUMBER)], f"c.{name}")
    if name == "created_at":
        return _Value([(_TRUE, STAMP_TEXT if declared == "datetime" else TEXT)], "c.created_at", "c.created_at")
    if not _NAME.fullmatch(name):
        raise _NotCompiled
    if name in BUILTIN_DEFAULTS:
        missing: Any = _Const(BUILTIN_DEFAULTS[name])
    else:
        missing = NONE if declared is not _UNDECLARED else UNDEFINED
    text_kind = {"date": DATE_TEXT, "datetime": STAMP_TEXT}.get(declared, TEXT) if isinstance(declared, str) \
        else TEXT
    value = _json_value("c.fields", name, context, [], text_kind)
    kind = _kind("c.fields", value.json[1], context)  # type: ignore[index]
    value.cases.insert(0, (_is(kind, ("absent", "null"), context), missing))  # typed_fields drops a null
    return value


_UNDECLARED = object()


def _event_field(name: str, context: _Context, alias: str) -> _Value:
    """`event.<name>` inside a has_event/event_count `where=`: Event.record (its properties, then name, at, id,
    contact); a property that is not there is an Undefined, a null one None."""
    if name in ("name", "contact"):
        return _Value([(_TRUE, TEXT)], f"{alias}.{name}", f"{alias}.{name}")
    if name == "id":
        return _Value([(f"{alias}.id IS NULL", NONE), (f"{alias}.id IS NOT NULL", TEXT)], f"{alias}.id",
                      f"{alias}.id")
    if name == "at":
        return _Value([(_TRUE, STAMP_TEXT)], f"{alias}.at", f"{alias}.at")
    if not _NAME.fullmatch(name):
        raise _NotCompiled
    value = _json_value(f"{alias}.properties", name, context, [], TEXT)
    kind = _kind(f"{alias}.properties", value.json[1], context)  # type: ignore[index]
    value.cases[0:0] = [(_is(kind, ("absent",), context), UNDEFINED), (_is(kind, ("null",), context), NONE)]
    return value


# --- comparisons -------------------------------------------------------------------------------------------

_MIRRORED = {"eq": "eq", "ne": "ne", "lt": "gt", "gt": "lt", "lteq": "gteq", "gteq": "lteq"}
_SQL_OPERATORS = {"eq": "=", "ne": "<>", "lt": "<", "gt": ">", "lteq": "<=", "gteq": ">="}


def _comparisons(node: nodes.Compare, context: _Context, event: str | None) -> Truth:
    """A chain `a < b < c` is `a < b and b < c`, each operand read once (reading has no effect here)."""
    operands = [node.expr, *(operand.expr for operand in node.ops)]
    result = _comparison(node.ops[0].op, operands[0], operands[1], context, event)
    for index, operand in enumerate(node.ops[1:], start=1):
        pair = _comparison(operand.op, operands[index], operands[index + 1], context, event)
        result = (_and(result[0], pair[0]), _or(result[1], _and(result[0], pair[1])))
    return result


def _comparison(op: str, left_node: nodes.Node, right_node: nodes.Node, context: _Context,
                event: str | None) -> Truth:
    left, right = _operand(left_node, context, event), _operand(right_node, context, event)
    if op in ("in", "notin"):
        true, doubt = _membership(left, right, context)
        return (_not(true) if op == "notin" else true), doubt
    if isinstance(left, _Const) and isinstance(right, _Const):
        raise _NotCompiled  # folded by Jinja2 already, or an error
    if isinstance(left, _Const):
        left, right, op = right, left, _MIRRORED[op]
    if not isinstance(right, _Const):
        raise _NotCompiled  # field against field: Python decides
    assert isinstance(left, _Value)
    constant = right.value
    return _over_cases(left, lambda kind: _compare(kind, op, constant, left, context))


def _compare(kind: Any, op: str, constant: Any, value: _Value, context: _Context) -> Any:
    """The outcome of `<value of this class> op constant`, as Python's operators give it."""
    equality = op in ("eq", "ne")
    if isinstance(kind, _Const):
        try:
            return bool(_PYTHON_OPERATORS[op](kind.value, constant))
        except TypeError:
            return _ERROR
    if kind == UNDEFINED:
        return _ERROR  # StrictUndefined raises on == and <
    if type(constant) in (list, tuple):
        if equality and kind in (NONE, NUMBER, COUNT, TEXT):
            return op == "ne"  # a scalar never equals a list
        return _ERROR
    if constant is None:
        return (kind == NONE) == (op == "eq") if equality else _ERROR
    sql_op = _SQL_OPERATORS[op]
    if type(constant) in (int, float, bool):
        if kind in (NUMBER, COUNT):
            return f"{value.sql} {sql_op} {context.bind(int(constant) if type(constant) is bool else constant)}"
        return (op == "ne") if equality else _ERROR
    if type(constant) is str:
        if kind == TEXT:
            return f"{value.text_sql} {sql_op} {context.bind(constant)}"
        if kind in (DATE_TEXT, STAMP_TEXT):
            return _ERROR  # a date read as one never equals a text; one that is not is compared as text
        return (op == "ne") if equality else _ERROR
    if type(constant) is datetime:
        if kind == STAMP_TEXT:
            try:
                stamped = constant.astimezone(UTC).isoformat(timespec="microseconds")
            except (OverflowError, ValueError):
                raise _NotCompiled from None
            canonical = context.spelling.canonical_stamp.format(value=value.text_sql)
            # only a time as the store writes it is certainly read as this time; any other text: Python
            return _Checked(canonical, f"{value.text_sql} {sql_op} {context.bind(stamped)}")
        if kind == DATE_TEXT:
            return (op == "ne") if equality else _ERROR  # a date never equals a datetime, nor is ordered with one
        return (op == "ne") if equality else _ERROR
    raise _NotCompiled


@dataclass
class _Checked:
    """An outcome sure only where `sure` holds; elsewhere Python decides."""

    sure: str
    true: str


_PYTHON_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b, "gt": lambda a, b: a > b,
    "lteq": lambda a, b: a <= b, "gteq": lambda a, b: a >= b,
}


def _membership(left: _Const | _Value, right: _Const | _Value, context: _Context) -> Truth:
    """`left in right`: a field in a list of constants, or a constant in a list (or text) field."""
    if isinstance(left, _Value) and isinstance(right, _Const):
        items = right.value
        if type(items) not in (list, tuple):
            raise _NotCompiled
        true, doubt = _FALSE, _FALSE
        value = left
        for item in items:  # `x in [a, b]` is `x == a or x == b` (== never raises on these)
            def equal_to(kind: Any, item: Any = item) -> Any:
                return _compare(kind, "eq", item, value, context)

            equal, equal_doubt = _over_cases(value, equal_to)
            true, doubt = _or(true, equal), _or(doubt, _and(_not(true), equal_doubt))
        return true, _or(doubt, left.doubt)
    if isinstance(left, _Const) and isinstance(right, _Value):
        return _over_cases(right, lambda kind: _contains(kind, left.value, right, context))
    raise _NotCompiled


def _contains(kind: Any, item: Any, value: _Value, context: _Context) -> Any:
    """The outcome of `item in <value of this class>`."""
    if isinstance(kind, _Const):
        try:
            return item in kind.value
        except TypeError:
            return _ERROR
    if kind == ARRAY and value.json is not None and type(item) in (str, int, float, bool):
        template = context.spelling.has_text if type(item) is str else context.spelling.has_number
        bound = context.bind(int(item) if type(item) is bool else item)
        return template.format(doc=value.json[0], key=value.json[1], value=bound)
    if kind == TEXT and type(item) is str:
        return context.spelling.contains.format(value=value.text_sql, part=context.bind(item))
    return _ERROR  # a number, None, an object, a date: Python raises or looks at keys


def _test(node: nodes.Test, context: _Context, event: str | None) -> Truth:
    """`x is none`, `x is defined`, `x is undefined` (`is not` is a Not around it)."""
    if node.name not in ("none", "defined", "undefined") or node.args or node.kwargs:
        raise _NotCompiled
    value = _operand(node.node, context, event)
    if isinstance(value, _Const):
        raise _NotCompiled

    def outcome(kind: Any) -> bool:
        if node.name == "none":
            return kind == NONE or (isinstance(kind, _Const) and kind.value is None)
        return (kind == UNDEFINED) == (node.name == "undefined")

    return _over_cases(value, outcome)


# --- the functions -----------------------------------------------------------------------------------------

def _arguments(node: nodes.Call, context: _Context) -> dict[str, Any]:
    """The constant arguments of has_event/event_count/in_list by name; _NotCompiled for any other."""
    from mauto.workflow.expressions import FUNCTIONS

    names = FUNCTIONS[node.node.name]  # type: ignore[attr-defined]
    if node.dyn_args is not None or node.dyn_kwargs is not None or len(node.args) > len(names):
        raise _NotCompiled
    given = dict(zip(names, node.args, strict=False))
    for keyword in node.kwargs:
        if keyword.key not in names or keyword.key in given:
            raise _NotCompiled
        given[keyword.key] = keyword.value
    return {name: _constant(value, context) if _is_constant(value) else _NotConstant for name, value in given.items()}


_NotConstant = object()


def _events_filter(node: nodes.Call, context: _Context) -> tuple[str, str]:
    """(the events counted, those whose `where=` Python must decide) as conditions on the events row `e`,
    as Scope._matching picks them: the name, at or before now, within/since, the `where=` string."""
    from mauto.workflow.durations import parse_duration
    from mauto.workflow.expressions import Expression

    arguments = _arguments(node, context)
    name, within, since, where = (arguments.get(key) for key in ("name", "within", "since", "where"))
    if type(name) is not str or _NotConstant in (within, since, where):
        raise _NotCompiled
    context.events = True
    now = context.now
    parts = [f"e.name = {context.bind(name)}", f"e.at <= {context.bind(_stamp(now))}"]
    if context.processed_only:
        parts.append("e.processed_at IS NOT NULL")
    if within:
        if type(within) is not str:
            raise _NotCompiled
        try:
            lower = now - parse_duration(within)
        except Exception:  # noqa: BLE001 - a bad duration, or past the calendar (Scope clamps it): Python
            raise _NotCompiled from None
        parts.append(f"e.at >= {context.bind(_stamp(lower))}")
    if since is not None:
        if type(since) is not datetime or since.tzinfo is None:
            raise _NotCompiled  # 'entry' (no entry outside a workflow), a text: Python
        parts.append(f"e.at >= {context.bind(_stamp(since))}")
    chosen = _and(*parts)
    if not where:
        return chosen, _FALSE
    if type(where) is not str:
        raise _NotCompiled
    try:
        tree = Expression(where).tree
    except ValueError:
        raise _NotCompiled from None
    true, doubt = _truth(tree, context, "e")
    return _and(chosen, true), _and(chosen, doubt)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _has_event(node: nodes.Call, context: _Context) -> Truth:
    chosen, doubtful = _events_filter(node, context)
    # Not correlated: SQLite runs each once per query (through events_name_at) and looks ids up in it.
    true = f"c.id IN (SELECT e.contact FROM events AS e WHERE {chosen})"
    doubt = _FALSE if doubtful == _FALSE else f"c.id IN (SELECT e.contact FROM events AS e WHERE {doubtful})"
    return true, doubt


def _event_count(node: nodes.Call, context: _Context) -> _Value:
    chosen, doubtful = _events_filter(node, context)
    count = f"(SELECT count(*) FROM events AS e WHERE e.contact = c.id AND {chosen})"
    doubt = _FALSE if doubtful == _FALSE else f"c.id IN (SELECT e.contact FROM events AS e WHERE {doubtful})"
    return _Value([(_TRUE, COUNT)], count, doubt=doubt)


def _in_list(node: nodes.Call, context: _Context) -> Truth:
    """in_list(name): `name in (contact.lists or [])`."""
    name = _arguments(node, context).get("name")
    if type(name) is not str:
        raise _NotCompiled
    lists = _contact_field("lists", context)

    def outcome(kind: Any) -> Any:
        if kind == TEXT:  # `or []`: an empty text is false, so not looked into
            return _and(f"{lists.text_sql} <> ''", _contains(TEXT, name, lists, context))
        if isinstance(kind, _Const):
            return _contains(_Const(kind.value or []), name, lists, context)
        if kind == NUMBER:  # 0 or false: `or []`; any other number: `in` raises
            return _Checked(f"{lists.sql} = 0", _FALSE)
        return _contains(kind, name, lists, context)

    return _over_cases(lists, outcome)


# --- date triggers -----------------------------------------------------------------------------------------

_DAY_MARGIN = timedelta(days=3)  # a local date is at most a day from its UTC one, and date_occurrences looks
# two days past its window (DST): three days each side hold every day it can look at, in any zone


def date_trigger_candidates(db: Any, spec: dict[str, Any], declared: Any, start: datetime,
                            end: datetime) -> Iterator[str]:
    """The ids of the contacts (not erased, in id order) for which a `date` trigger (`spec`: field, every,
    offset) may come due in [start, end), so that only these are read and given to date_due: those whose
    field's month and day (`every: year`), day (`month`) or date (`once`) is near a day of the window, plus
    every one whose field holds anything but a text starting YYYY-MM-DD (date_due then words its error as
    before). A field not declared as a date or datetime: every contact holding it (date_due refuses them
    all). The SQL is a scan of `contacts` in C (no Python per contact): see docs/store.md."""
    from mauto.workflow.durations import parse_duration

    name = spec["field"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"field name {name!r}")
    parameters: dict[str, Any] = {"path": '$."' + name + '"'}
    value = "json_extract(c.fields, :path)"
    kind = "json_type(c.fields, :path)"
    held = f"coalesce({kind}, 'null') <> 'null'"
    offset = parse_duration(spec.get("offset", "0d"), signed=True)
    every = spec.get("every", "year")
    try:
        first = (start - offset).date() - _DAY_MARGIN
        last = (end - offset).date() + _DAY_MARGIN
    except OverflowError:  # a window at the calendar's edge: every contact holding the field
        first, last, every = date.min, date.max, "year"
    if declared not in ("date", "datetime"):
        near = "FALSE"
        odd = held
    else:
        odd = f"({held} AND NOT ({kind} = 'text' AND {value} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'))"
        if every == "once":
            near = f"substr({value}, 1, 10) BETWEEN :first AND :last"
            parameters.update(first=first.isoformat(), last=last.isoformat())
        else:
            width = 5 if every == "year" else 2  # MM-DD or DD
            wanted = _near_days(first, last, width)
            if wanted is None:
                near = held
            else:
                marks = ", ".join(f":d{index}" for index in range(len(wanted)))
                parameters.update({f"d{index}": text for index, text in enumerate(wanted)})
                near = f"substr({value}, {11 - width}, {width}) IN ({marks})"
    sql = f"SELECT c.id FROM contacts AS c WHERE c.erased_at IS NULL AND ({near} OR {odd}) ORDER BY c.id"
    for (contact,) in db.execute(sql, parameters):
        yield contact


def _near_days(first: date, last: date, width: int) -> list[str] | None:
    """The MM-DD (width 5) or DD (width 2) of the days from first to last, and of the days past a month's end
    that come round on its last day (29 February on the 28th, the 31st on the 30th); None past a year."""
    if (last - first).days > 366:
        return None
    wanted: set[str] = set()
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        wanted.add(day.isoformat()[-width:])
        if (day + timedelta(days=1)).month != day.month:
            wanted.update(f"{day.month:02d}-{later:02d}"[-width:] for later in range(day.day + 1, 32))
    return sorted(wanted)
