"""Expressions (`where`, `audience`, `if`, segments): Jinja2 expressions in a sandbox.

An expression is parsed once into Jinja2's AST. The lint walks that tree to
find the names, functions, fields and events it uses; the engine compiles the
same tree into a callable. An expression made only of literals, names, fields
of records, comparisons and `and`/`or`/`not`/`if else` also gets a fast path:
the Python Jinja2 would write for it, with the sandbox's attribute lookup
replaced by a direct read of the record's field; whenever that read is not
certainly what the sandbox would return, the call goes through Jinja2.
"""
from __future__ import annotations

import contextlib
import math
import operator
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import (
    BaseLoader,
    StrictUndefined,
    TemplateSyntaxError,
    Undefined,
    nodes,
    pass_context,
    pass_eval_context,
)
from jinja2.compiler import operators as JINJA_COMPARISONS
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

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

# Bounds on what an expression may be. Jinja2's parser spends about 14 Python frames per bracket level and
# its compiler a few per node level, and Python refuses more than 200 nested parentheses in the code Jinja2
# writes: past these bounds parsing or compiling would fail with a RecursionError instead of a sentence.
MAX_LENGTH = 10_000  # characters
MAX_NESTING = 32  # brackets: ( [ { inside one another
MAX_DEPTH = 100  # levels of the parsed tree: `a or b or c` is three levels deep


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
            with contextlib.suppress(KeyError, ValueError):
                value = value.astimezone(ZoneInfo(zone))
    if isinstance(value, (date, datetime)):
        return value.strftime(format)
    return str(value)


# Bounds on what one operator may build: past them `(9**9)**(9**9)` computes for hours and `'ab' * 10**9`
# allocates gigabytes, in the lint, a `--where` or a tick, for every contact.
MAX_EXPONENT = 1_000  # an integer `**` exponent
MAX_BITS = 100_000  # an integer result of `**` or `*`: about 30,000 digits
MAX_ITEMS = 100_000  # characters or items of a string or list built by `*`, `+` or a `%` format

_SEQUENCES = (str, list, tuple, bytes)
_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "//": operator.floordiv,
    "**": operator.pow, "%": operator.mod,
}
# a `%` conversion's width and precision: `%-08.3f`, `%(name)10s`, `%*d`
_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def bounded_binop(symbol: str, left: Any, right: Any) -> Any:
    """`left <symbol> right`, refused with a SecurityError when the result would be too big to build quickly.

    Refused: an integer `**` with an exponent above MAX_EXPONENT or a result above MAX_BITS bits, an integer
    `*` above MAX_BITS bits, a string or list longer than MAX_ITEMS built by `*` or `+`, a `%` format with a
    width or precision above MAX_ITEMS (or one given by `*`). Float results are left alone: Python raises
    OverflowError for a float too big, at once.
    """
    if symbol == "**" and _integer(left) and _integer(right) and right > 0 and abs(left) > 1:
        if right > MAX_EXPONENT:
            raise SecurityError(f"`**` with an exponent of {right:,} is refused (at most {MAX_EXPONENT:,})")
        bits = (abs(left).bit_length() - 1) * right  # a lower bound: left >= 2 ** (bit_length - 1)
        if bits > MAX_BITS:
            raise SecurityError(f"`**` with a result of about {bits * 3 // 10:,} digits is refused "
                                f"(at most {MAX_BITS * 3 // 10:,})")
    elif symbol == "*":
        if _integer(left) and _integer(right):
            bits = abs(left).bit_length() + abs(right).bit_length()
            if bits > MAX_BITS + 1:
                raise SecurityError(f"`*` with a result of about {bits * 3 // 10:,} digits is refused "
                                    f"(at most {MAX_BITS * 3 // 10:,})")
        else:
            sequence, times = (left, right) if isinstance(left, _SEQUENCES) else (right, left)
            if isinstance(sequence, _SEQUENCES) and _integer(times) and len(sequence) * times > MAX_ITEMS:
                raise SecurityError(f"`*` building {_items(sequence, len(sequence) * times)} is refused "
                                    f"(at most {MAX_ITEMS:,})")
    elif symbol == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        if len(left) + len(right) > MAX_ITEMS:
            raise SecurityError(f"`+` building {_items(left, len(left) + len(right))} is refused "
                                f"(at most {MAX_ITEMS:,})")
    elif symbol == "%" and isinstance(left, str):
        _check_percent_format(left)
    return _BINOPS[symbol](left, right)


def _integer(value: Any) -> bool:
    return isinstance(value, int)  # bool too: True * 'x' repeats as 1 does


def _items(sequence: Any, count: int) -> str:
    return f"a string of {count:,} characters" if isinstance(sequence, (str, bytes)) else f"a list of {count:,} items"


def _check_percent_format(text: str) -> None:
    for match in _PERCENT_FIELD.finditer(text.replace("%%", "")):
        for size in match.groups():
            if size == "*":
                raise SecurityError("a `%` format taking its width or precision from `*` is refused")
            if size is not None and int(size) > MAX_ITEMS:
                raise SecurityError(f"a `%` format with a width or precision of {int(size):,} is refused "
                                    f"(at most {MAX_ITEMS:,})")


# String methods that pad to a width (`'x'.ljust(10**9)` allocates a gigabyte), and `{:>999999999}` in a
# `str.format` field.
_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})
_FORMAT_WIDTH = re.compile(r"\{[^{}]*?[:.](?:[^{}]*?\D)?(\d{6,})")


def _check_width(what: str, width: Any) -> None:
    if _integer(width) and width > MAX_ITEMS:
        raise SecurityError(f"{what} with a width of {width:,} is refused (at most {MAX_ITEMS:,})")


def _check_size(what: str, size: int) -> None:
    if size > MAX_ITEMS:
        raise SecurityError(f"{what} building a string of {size:,} characters is refused (at most {MAX_ITEMS:,})")


def _check_method(owner: str | bytes, name: str, args: tuple, kwargs: dict[str, Any]) -> None:
    """Refuse a call of a string method that would build something past MAX_ITEMS (before it runs)."""
    if name in _WIDTH_METHODS:
        for value in (*args, *kwargs.values()):
            _check_width(f"`.{name}()`", value)
    elif name in ("format", "format_map") and isinstance(owner, str):
        found = _FORMAT_WIDTH.search(owner)
        if found is not None:
            _check_width("a `.format()` field", int(found.group(1)))
    elif name == "replace" and isinstance(owner, str) and len(args) >= 2 and isinstance(args[0], str) \
            and args[0] and isinstance(args[1], str):
        count = owner.count(args[0])
        if len(args) > 2 and _integer(args[2]) and args[2] >= 0:
            count = min(count, args[2])
        _check_size("`.replace()`", len(owner) + count * (len(args[1]) - len(args[0])))
    elif name == "join" and args and isinstance(args[0], (list, tuple)):
        _check_size("`.join()`", sum(len(item) for item in args[0] if isinstance(item, (str, bytes)))
                    + len(owner) * max(len(args[0]) - 1, 0))


def _bounded_filters(filters: dict[str, Callable[..., Any]]) -> None:
    """The built-in filters that pad, indent, format or join, checked before they build (as the methods are)."""
    center, indent, format_, join, replace = (filters[name] for name in ("center", "indent", "format", "join",
                                                                          "replace"))

    def bounded_center(value: Any, width: int = 80) -> Any:
        _check_width("`|center`", width)
        return center(value, width)

    def bounded_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> Any:
        if _integer(width):
            _check_size("`|indent`", len(str(value)) + (str(value).count("\n") + 1) * width)
        elif isinstance(width, str):
            _check_size("`|indent`", len(str(value)) + (str(value).count("\n") + 1) * len(width))
        return indent(value, width, *args, **kwargs)

    def bounded_format(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            _check_percent_format(value)
        return format_(value, *args, **kwargs)

    @pass_eval_context
    def bounded_join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        items = list(value) if not isinstance(value, (str, bytes)) else value
        if isinstance(items, list):
            _check_size("`|join`", sum(len(str(item)) for item in items) + len(d) * max(len(items) - 1, 0))
        return join(eval_ctx, items, d, attribute)

    @pass_eval_context
    def bounded_replace(eval_ctx: Any, value: Any, old: Any, new: Any, count: Any = None) -> Any:
        text, old_text, new_text = str(value), str(old), str(new)
        if old_text:
            found = text.count(old_text)
            if _integer(count) and count >= 0:
                found = min(found, count)
            _check_size("`|replace`", len(text) + found * (len(new_text) - len(old_text)))
        return replace(eval_ctx, value, old, new, count)

    filters.update(center=bounded_center, indent=bounded_indent, format=bounded_format, join=bounded_join,
                   replace=bounded_replace)


class BoundedSandbox(SandboxedEnvironment):
    """Jinja2's sandbox with `**`, `*`, `+` and `%` bounded (bounded_binop), and the string methods and
    filters that pad, format, replace or join checked before they build (`_check_method`, `_bounded_filters`).

    Intercepted operators are also kept out of Jinja2's compile-time constant folding (BinExpr.as_const
    gives up on them in a sandbox), which would otherwise compute `(9**9)**(9**9)` while compiling.
    """

    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return bounded_binop(operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # A contact's, an event's or the vars' field (`contact.first_name` in every template): what the
        # sandbox would find after an attribute lookup and its checks, read at once. Anything else (another
        # object, an underscore name, a field not held, a value not plain data) goes the sandbox's way.
        if (type(obj) is _record_type or (_record_type is None and _is_record_type(type(obj)))) \
                and not attribute.startswith("_"):
            value = obj._fields.get(attribute, _Fallback)
            if type(value) in _PLAIN_FIELDS:
                return value
        return super().getattr(obj, attribute)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's own
        # a bound method's string; the sandbox hands `str.format` over wrapped (its formatter), the original inside
        owner = getattr(__obj, "__self__", None) or getattr(getattr(__obj, "__wrapped__", None), "__self__", None)
        if isinstance(owner, (str, bytes)):
            _check_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def sandbox(loader: BaseLoader | None = None, autoescape: Any = False) -> SandboxedEnvironment:
    """The one Jinja2 environment shape mauto uses: sandboxed, strict, no globals but ours, operators bounded."""
    # auto_reload off: a run never sees a template change under it, and checking costs a stat per render
    environment = BoundedSandbox(loader=loader, autoescape=autoescape, undefined=StrictUndefined,
                                 keep_trailing_newline=True, auto_reload=False)
    environment.globals.clear()
    _bounded_filters(environment.filters)
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

    fallbacks = 0  # calls the fast path handed to Jinja2 (an instance's count once one has)

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
        try:
            template = _ENVIRONMENT.from_string(nodes.Template(body, lineno=1))
        except (RecursionError, MemoryError):  # parse() bounds the tree; this is the last guard
            raise ExpressionError(f"expression too deeply nested (more than {MAX_DEPTH} levels)") from None
        return TemplateExpression(template, undefined_to_none=False)

    @cached_property
    def fast(self) -> Callable[[dict[str, Any]], Any] | None:
        """The fast path: a function of the names (a dict) returning what the evaluator would, or raising
        whenever it cannot be sure to (then `evaluate` asks the evaluator); None when the expression uses
        anything outside its grammar (see _python)."""
        _ = self.evaluator  # compiled first: what Jinja2 cannot compile fails as it always has
        return _fast_function(self.tree)

    def evaluate(self, **names: Any) -> Any:
        """The value for these names. Never an Undefined: a missing or refused name raises here, so the caller
        knows which expression failed (an Undefined would raise later, wherever its value is first used)."""
        fast = self.fast
        if fast is not None:
            try:
                value = fast(names)
            except Exception:  # Jinja2 decides: its value, or its own error and message
                pass
            else:
                if not isinstance(value, Undefined):
                    return value
            self.fallbacks += 1
        value = self.evaluator(**names)
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()
        return value


class _Fallback(Exception):
    """The fast path cannot be sure what the sandbox would make of this call: the evaluator decides."""


class _NotFast(Exception):
    """A node outside the fast path's grammar: the expression always goes through Jinja2."""


# The values a field may hold for the fast path to hand it on (exactly these types): anything else (an
# Undefined, a bound `str.format` the sandbox would wrap, a subclass) goes through the sandbox.
_PLAIN_FIELDS = frozenset({str, int, float, bool, type(None), list, tuple, dict, datetime, date})
_LITERALS = frozenset({str, int, float, bool, type(None)})
_record_type: type | None = None  # mauto.engine.records.Record, once seen (workflow may not import engine)


def _is_record_type(cls: type) -> bool:
    """Whether `cls` is the engine's Record, whose only attributes are internal: the sandbox's getattr finds
    no attribute of the class, so `record.name` is its `__getattr__`, `record._fields[name]`."""
    global _record_type
    if cls.__module__ != "mauto.engine.records" or cls.__qualname__ != "Record" \
            or cls.__getattribute__ is not object.__getattribute__ or "__getattr__" not in cls.__dict__ \
            or any(not name.startswith("_") for name in dir(cls)):
        return False
    _record_type = cls
    return True


def _field(record: Any, name: str) -> Any:
    """`record.name` as the sandbox reads it, when that is certainly the record's field; _Fallback otherwise
    (not a Record, a field it does not hold, a value not plain)."""
    if type(record) is not _record_type and not _is_record_type(type(record)):
        raise _Fallback
    value = record._fields[name]
    if type(value) in _PLAIN_FIELDS:
        return value
    raise _Fallback


def _fast_function(tree: nodes.Expr) -> Callable[[dict[str, Any]], Any] | None:
    """The fast path for `tree` (see Expression.fast), or None when it uses anything outside the grammar.

    Written as Jinja2's compiler writes the expression (the same Python operators, brackets and literals, so
    `and`/`or` return an operand, comparisons chain, `not in` is one operator), except that a name is read
    from the dict (a missing one raises KeyError) and a field through _field.
    """
    loaded: dict[str, str] = {}  # name -> its local variable
    try:
        body = _python(tree, loaded)
    except _NotFast:
        return None
    lines = ["def fast(names):"]
    lines += [f"    {local} = names[{name!r}]" for name, local in loaded.items()]
    if loaded:  # Jinja2's own marker of a name not given: its Undefined
        lines += [f"    if {' or '.join(f'{local} is missing' for local in loaded.values())}:",
                  "        raise Fallback"]
    lines.append(f"    return {body}")
    namespace: dict[str, Any] = {"field": _field, "Fallback": _Fallback, "missing": missing}
    try:
        exec(compile("\n".join(lines), "<fast expression>", "exec", dont_inherit=True), namespace)
    except (SyntaxError, RecursionError, MemoryError):  # nested past what Python compiles: Jinja2 only
        return None
    function: Callable[[dict[str, Any]], Any] = namespace["fast"]
    return function


def _python(node: nodes.Node, loaded: dict[str, str]) -> str:
    """The Python for `node`, as Jinja2 writes it; _NotFast for a node outside the grammar: literals, lists and
    tuples, names (not `self`, the template's own reference), public attributes, comparisons, `and`, `or`, `not`,
    `-`, `+` and `if else` (with an else: without one a false test is Jinja2's Undefined)."""
    if isinstance(node, nodes.Const):
        return _literal(node.value)
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name != "self":
        return loaded.setdefault(node.name, f"n{len(loaded)}")
    if isinstance(node, nodes.Getattr) and not node.attr.startswith("_"):  # parse() refuses those anyway
        return f"field({_python(node.node, loaded)}, {node.attr!r})"
    if isinstance(node, nodes.Compare):
        parts = [_python(node.expr, loaded)]
        for operand in node.ops:
            parts += [JINJA_COMPARISONS[operand.op], _python(operand.expr, loaded)]
        return f"({' '.join(parts)})"
    if isinstance(node, (nodes.And, nodes.Or)):
        return f"({_python(node.left, loaded)} {node.operator} {_python(node.right, loaded)})"
    if isinstance(node, (nodes.Not, nodes.Neg, nodes.Pos)):
        return f"({'not ' if isinstance(node, nodes.Not) else node.operator}{_python(node.node, loaded)})"
    if isinstance(node, nodes.CondExpr) and node.expr2 is not None:
        return (f"({_python(node.expr1, loaded)} if {_python(node.test, loaded)} "
                f"else {_python(node.expr2, loaded)})")
    if isinstance(node, nodes.List) or (isinstance(node, nodes.Tuple) and node.ctx == "load"):
        return _sequence([_python(item, loaded) for item in node.items], isinstance(node, nodes.List))
    raise _NotFast


def _literal(value: Any) -> str:
    """A constant as Jinja2 writes it (its repr), when that reads back as the same value: a float that is not
    finite is written `inf` or `nan`, which Jinja2's code then fails to find (a NameError)."""
    kind = type(value)
    if kind is float and not math.isfinite(value):
        raise _NotFast
    if kind in _LITERALS:  # an int past Python's limit on digits is refused by parse(): its repr would fail
        return repr(value)
    if kind in (list, tuple):  # a list or tuple of constants, folded by Jinja2's optimizer
        return _sequence([_literal(item) for item in value], kind is list)
    raise _NotFast


def _sequence(items: list[str], is_list: bool) -> str:
    if is_list:
        return f"[{', '.join(items)}]"
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


@lru_cache(maxsize=8192)
def _parsed(source: str) -> tuple[nodes.Expr, list[Use]]:
    """Parse and analyse once per distinct source: offsets are relative to the source, so sites share them.

    An ExpressionError is not cached; it is raised again for each site.
    """
    tree = parse(source)
    return tree, analyse(tree, source)


def parse(source: str) -> nodes.Expr:
    """Parse an expression (no `{{ }}`) into Jinja2's AST.

    Refused with an ExpressionError: an empty one, one longer than MAX_LENGTH or nested deeper than
    MAX_NESTING brackets or MAX_DEPTH levels, and one that reads an attribute whose name starts with `_`
    (Python's internals: the sandbox would refuse it at run time, for every contact).
    """
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("the expression is empty")
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"expression too long ({len(source):,} characters; at most {MAX_LENGTH:,}); "
                              "name a segment in mauto.yaml, or test a list with `in [...]`")
    if "{{" in source or "{%" in source:
        raise ExpressionError("write the expression without `{{ }}` or `{% %}`", source.find("{"))
    nesting, opened = _bracket_nesting(source)
    if nesting > MAX_NESTING:
        raise ExpressionError(f"expression too deeply nested ({nesting} levels of brackets; at most {MAX_NESTING})",
                              opened)
    try:
        parser = Parser(_ENVIRONMENT, source, state="variable")
        tree = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            raise ExpressionError(f"unexpected `{token.value}` after the end of the expression",
                                  _end_of_expression(source))
    except TemplateSyntaxError as error:
        raise ExpressionError(_syntax_message(error.message or "invalid syntax")) from None
    except (RecursionError, MemoryError):  # `not not not …` thousands of times: one frame each
        raise ExpressionError(f"expression too deeply nested (more than {MAX_DEPTH} levels)") from None
    except ExpressionError:
        raise
    except ValueError:  # the lexer's int() of a literal past Python's limit on digits
        raise _too_many_digits(source) from None
    depth = _check_tree(tree, source)
    if depth > MAX_DEPTH:
        hint = "; test a list of values with `in [...]` rather than a chain of `or`" if " or " in source else ""
        raise ExpressionError(f"expression too deeply nested ({depth:,} levels; at most {MAX_DEPTH}){hint}")
    _check_integers(tree, source)
    tree.set_environment(_ENVIRONMENT)
    _check_constants(tree, source)
    return tree


def _check_integers(tree: nodes.Expr, source: str) -> None:
    """Refuse an integer Python will not write in decimal (`0x` and thousands of digits): Jinja2's compiler
    writes every literal with repr(), which would fail with a ValueError when the expression is first used."""
    for node in _nodes(tree, nodes.Const):
        if type(node.value) is int:
            try:
                repr(node.value)
            except ValueError:
                raise _too_many_digits(source) from None


def _too_many_digits(source: str) -> ExpressionError:
    """The error for a number past Python's limit on digits, placed on the first decimal one (when it is)."""
    limit = sys.get_int_max_str_digits()
    offset = next((match.start() for match in re.finditer(r"\d[\d_]*", mask_strings(source))
                   if len(match.group(0).replace("_", "")) > limit), -1)
    return ExpressionError(f"a number of more than {limit:,} digits cannot be read", offset)


class _NotConstant(Exception):
    """A part of the tree whose value is known only at run time."""


def _check_constants(tree: nodes.Expr, source: str) -> None:
    """Raise an ExpressionError for an operator bounded_binop refuses on constants: `(9**9)**(9**9) > 0`.

    Refused here, once, rather than at run time for every contact: the lint names the file, line and column,
    and `--where` fails before reading the store. Only literals and operators on them are computed (by the
    same bounded operators), so this is as quick as the bounds make them.
    """
    known: dict[int, Any] = {}

    def value(node: nodes.Node) -> Any:
        if id(node) in known:
            found = known[id(node)]
            if found is _NotConstant:
                raise _NotConstant
            return found
        try:
            if isinstance(node, nodes.Const):
                result = node.value
            elif isinstance(node, (nodes.Neg, nodes.Pos)):
                operand = value(node.node)
                if not isinstance(operand, (int, float)):
                    raise _NotConstant
                result = -operand if isinstance(node, nodes.Neg) else +operand
            elif isinstance(node, (nodes.List, nodes.Tuple)):
                items = [value(item) for item in node.items]
                result = items if isinstance(node, nodes.List) else tuple(items)
            elif isinstance(node, nodes.BinExpr):
                left, right = value(node.left), value(node.right)
                try:
                    result = bounded_binop(node.operator, left, right)
                except SecurityError:
                    raise
                except Exception:  # 1 / 0, 'a' - 1: an error at run time, as Jinja2 leaves it
                    raise _NotConstant from None
            else:
                raise _NotConstant
        except _NotConstant:
            known[id(node)] = _NotConstant
            raise
        known[id(node)] = result
        return result

    for node in _nodes(tree, nodes.BinExpr):  # outermost first: the first refusal is the one computed first
        try:
            value(node)
        except _NotConstant:
            continue
        except SecurityError as error:
            raise ExpressionError(str(error), _operator_offset(source, str(error))) from None


def _operator_offset(source: str, message: str) -> int:
    """The offset of the refused operator when the expression writes it once; -1 (the expression) otherwise."""
    symbol = "%" if message.startswith("a `%`") else message.split("`")[1]
    pattern = {"*": r"(?<!\*)\*(?!\*)", "**": r"\*\*"}.get(symbol, re.escape(symbol))
    found = [match.start() for match in re.finditer(pattern, mask_strings(source))]
    return found[0] if len(found) == 1 else -1


def _bracket_nesting(source: str) -> tuple[int, int]:
    """How deep brackets nest in `source` (strings left out), and the offset of the first one past MAX_NESTING."""
    deepest = level = 0
    opened = -1
    for offset, char in enumerate(mask_strings(source)):
        if char in "([{":
            level += 1
            if level > deepest:
                deepest = level
                if level == MAX_NESTING + 1:
                    opened = offset
        elif char in ")]}":
            level = max(level - 1, 0)
    return deepest, opened


def _check_tree(tree: nodes.Node, source: str) -> int:
    """The depth of `tree`; raises ExpressionError at the first read of an internal (`_`) attribute.

    A loop rather than recursion: the tree may be thousands of levels deep (a long chain of `or`).
    """
    deepest = 0
    private: set[str] = set()
    stack: list[tuple[nodes.Node, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        name = _private_name(node)
        if name is not None:
            private.add(name)
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
    if private:  # the first one written
        offset, name = min((_private_offset(source, name), name) for name in private)
        raise ExpressionError(f"`{name}` cannot be read: names starting with `_` are internal; an expression "
                              "reads fields, such as contact.first_name", offset)
    return deepest


def _private_name(node: nodes.Node) -> str | None:
    """The internal name `node` reads: `contact.__class__`, `contact['_x']`, `contact|attr('_x')`."""
    if isinstance(node, nodes.Getattr):
        name = node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        name = node.arg.value
    elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args and isinstance(node.args[0], nodes.Const):
        name = node.args[0].value
    else:
        return None
    return name if isinstance(name, str) and name.startswith("_") else None


def _private_offset(source: str, name: str) -> int:
    found = _find(mask_strings(source), rf"\.\s*{re.escape(name)}\b")
    if found >= 0:
        return source.index(name, found)
    found = _find(source, rf"['\"]{re.escape(name)}['\"]")
    return found + 1 if found >= 0 else -1


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
            except (TemplateSyntaxError, RecursionError):
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
